"""Request bodies as strict JSON: what ``json.loads`` lets through but no client should send.

Python's parser accepts ``NaN`` and ``Infinity`` (not JSON) and ``\\ud800`` escapes (lone
surrogates: not Unicode text, so they cannot be encoded again, and would fail deep inside a call
as a server error). Both are refused here with 10009 naming the field; so are bodies that are not
UTF-8 or are nested too deeply.
"""

from __future__ import annotations

import json
from typing import Any

from aiges.errors import AigesError, ErrorCode


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


def invalid(message: str) -> AigesError:
    return AigesError(ErrorCode.INVALID_DATA, message)


def parse_json(body: bytes | str, what: str = "the body") -> Any:
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except _NotFinite as exc:
        raise invalid(f"{what} holds {exc}, which is not JSON (numbers must be finite)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise invalid(f"{what} is nested too deeply") from None
    where = not_text(value, "")
    if where is not None:
        raise invalid(f"{where or what} is not valid Unicode text (it holds a lone surrogate escape)")
    return value


def not_text(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) in ``value`` that is not valid Unicode."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _encodable(key):
                    return f"a key in {where or 'the body'} ({ascii(key)})"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
