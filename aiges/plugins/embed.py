"""``aiges_embed``: the module wrappers written for the original C++ shim import
(``from aiges_embed import ResponseData, Response, ..., callback``), installed before a Python
wrapper is imported.

``callback(response, usrTag)`` delivers a Response a wrapper's own thread produced to the session
``usrTag`` names; a non-zero ``error_code`` fails that session with 10910 and the wrapper's text
for the code. ``callback_metric(usrTag, key, count)`` is metering (usage counters) and
``callback_trace(usrTag, key, value)`` a trace entry in the call's log.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

from aiges import dto
from aiges.errors import ErrorCode
from aiges.plugins.contract import PluginHost

MODULE = "aiges_embed"


class Embed:
    """The installed module's state: where its callbacks go, and whose error texts it uses
    (set once the wrapper's adapter exists)."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self.error_text: Callable[[int], str] = lambda code: f"wrapper error {code}"

    def callback(self, response: Any, usr_tag: str, *_: Any) -> int:
        from aiges.plugins.pyclass import result_items

        code = getattr(response, "error_code", 0)
        if code:
            return self.host.output_failed(usr_tag, ErrorCode.WRAPPER_ASYNC, self.error_text(code))
        return self.host.output(usr_tag, result_items(response, "callback"))

    def callback_metric(self, usr_tag: str, key: str, count: int) -> int:
        self.host.usage(usr_tag, self.host.app_id(usr_tag), "", key, count)
        return 0

    def callback_trace(self, usr_tag: str, key: str, value: str) -> int:
        self.host.trace(usr_tag, "trace", key, value)
        return 0


def install(host: PluginHost) -> Embed:
    embed = Embed(host)
    module = types.ModuleType(MODULE)
    for name in dto.__all__:
        setattr(module, name, getattr(dto, name))
    module.callback = embed.callback  # type: ignore[attr-defined]
    module.callback_metric = embed.callback_metric  # type: ignore[attr-defined]
    module.callback_trace = embed.callback_trace  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    return embed
