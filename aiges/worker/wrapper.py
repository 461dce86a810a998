"""Calling into the wrapper from the worker: its exceptions become typed errors."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from aiges.engine.messages import Destroy, Finish, LoadResource, Once, Open, UnloadResource, Write
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import Plugin

log = logging.getLogger("aiges.worker")
T = TypeVar("T")

ERROR_FOR: dict[type, ErrorCode] = {
    Once: ErrorCode.WRAPPER_EXEC,
    Open: ErrorCode.WRAPPER_EXEC,
    Write: ErrorCode.WRAPPER_WRITE,
    Finish: ErrorCode.WRAPPER_READ,
    Destroy: ErrorCode.WRAPPER_DESTROY,
    LoadResource: ErrorCode.WRAPPER_LOAD,
    UnloadResource: ErrorCode.WRAPPER_UNLOAD,
}
"""The code an unexpected exception in the wrapper gets, by the call it broke."""


def wrapper_call(code: ErrorCode, function: Callable[..., T], *args: Any) -> T:
    """Call into the wrapper; an exception it raises becomes AigesError(code) with its text."""
    try:
        return function(*args)
    except AigesError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code
        log.error("%s failed:\n%s", getattr(function, "__name__", "wrapper call"), traceback.format_exc().rstrip())
        raise AigesError(code, f"{type(exc).__name__}: {exc}") from None


def wrapper_schema(plugin: Plugin) -> dict[str, Any] | None:
    """The declared fields' schema, for wrappers that declare fields."""
    try:
        return plugin.schema()
    except Exception:  # noqa: BLE001 - odd declarations must not stop the worker
        log.warning("cannot build the wrapper's schema:\n%s", traceback.format_exc().rstrip())
        return None
