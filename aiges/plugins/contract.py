"""The one internal Plugin interface that every wrapper style is adapted to.

The worker only ever talks to a ``Plugin``; it never asks which style of wrapper is behind it.
Adapters raise ``AigesError`` with the loader's codes (10909 exec, 10905 create, 10907 write,
10908 read, 10903 / 10904 resource load / unload) and the wrapper's own error text.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from aiges.engine.items import DataItem, Payload
from aiges.engine.shm import copy_out
from aiges.errors import AigesError, ErrorCode


class PluginLoadError(Exception):
    """The wrapper could not be found, imported or initialised; the text says why."""


class DeclaredFields(NamedTuple):
    """The fields a wrapper declares (class style: its requestCls and responseCls), by key:
    params and inputs are checked before the wrapper runs, accepts are its outputs."""

    params: dict[str, Any]
    inputs: dict[str, Any]
    accepts: dict[str, Any]


NO_FIELDS = DeclaredFields({}, {}, {})


class Plugin(Protocol):
    """A wrapper, whatever its style. ``capabilities``: "once" (one-shot calls), "stream"
    (sessions), "read" (session output is read with ``read``; without it, output comes only
    through the host), "batch" (``batch`` serves several one-shot calls at once), "resources"
    (personalised resources: ``load_resource`` / ``unload_resource``).

    ``res_ids``: the personalised resources a call or a session names (``aiges.res_ids``), all
    loaded; the wrapper gets them as its person ids (``psrIds`` / ``persId``)."""

    style: str
    service_id: str
    version: str
    capabilities: frozenset[str]
    fields: DeclaredFields

    def init(self, config: dict[str, str]) -> None:
        """Raises PluginLoadError with the wrapper's reason when it fails."""

    def fini(self) -> None: ...

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]: ...

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        """Several one-shot calls in one go; each gets its result, or its own error."""

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        """A new session; returns the wrapper's handle for it."""

    def write(self, handle: str, items: list[DataItem]) -> None: ...

    def read(self, handle: str) -> list[DataItem]: ...

    def destroy(self, handle: str) -> None: ...

    def cancel(self, tag: str) -> None:
        """The caller of the call (or session) ``tag`` is gone or out of time, while the wrapper
        runs it, called from another thread: a C engine's ``wrapperCancel(usrTag)`` (aiges'
        extension, when exported; the "cancel" capability). Python styles read
        ``aiges.sdk.call_context()`` instead: for them this does nothing."""

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        """``wrapperLoadRes``: 10903 with the wrapper's reason if it fails (only called with the
        "resources" capability)."""

    def unload_resource(self, res_id: int) -> None:
        """``wrapperUnloadRes``: 10904 with the wrapper's reason if it fails."""

    def error_text(self, code: int) -> str:
        """The wrapper's text for its own error code."""

    def schema(self) -> dict[str, Any] | None:
        """``{meta, schemainput, schemaoutput}`` from the declared fields; None without any."""


class PluginHost(Protocol):
    """What a plugin calls back into while it runs: the worker. ``name`` is whatever the wrapper
    calls a call or session by (our handle, its own handle, or the request's sid)."""

    def output(self, name: str, items: list[DataItem]) -> int:
        """Results a wrapper pushes for a session (0 if the session exists, else -1)."""

    def output_failed(self, name: str, code: int, message: str) -> int:
        """The session's output failed with ``code``."""

    def app_id(self, name: str) -> str:
        """The app id of the call or session (its ``app_id``/``appid`` header), or ""."""

    def usage(self, name: str, app_id: str, channel: str, key: str, count: int) -> None:
        """Metering: ``count`` units of ``key`` used by ``app_id``."""

    def trace(self, name: str, kind: str, key: str, value: str) -> None:
        """A trace or event entry for the call's log."""

    def metric(self, name: str, labels: dict[str, str], value: int) -> None:
        """One observation of a wrapper-defined metric."""

    def lb_labels(self, labels: dict[str, str]) -> None:
        """Extra labels for this server's registry entry (what load balancers read)."""


class DetachedHost:
    """The host of a plugin loaded outside a worker (``aiges check``): no session to deliver
    to, nothing to report to."""

    def output(self, name: str, items: list[DataItem]) -> int:
        return -1

    def output_failed(self, name: str, code: int, message: str) -> int:
        return -1

    def app_id(self, name: str) -> str:
        return ""

    def usage(self, name: str, app_id: str, channel: str, key: str, count: int) -> None:
        return None

    def trace(self, name: str, kind: str, key: str, value: str) -> None:
        return None

    def metric(self, name: str, labels: dict[str, str], value: int) -> None:
        return None

    def lb_labels(self, labels: dict[str, str]) -> None:
        return None


def batch_by_once(
    plugin: Plugin, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
) -> list[list[DataItem] | AigesError]:
    """``batch`` for a style with no batch call of its own: one ``once`` per call."""
    results: list[list[DataItem] | AigesError] = []
    for tag, call_params, call_items in zip(tags, params, items, strict=True):
        try:
            results.append(plugin.once(tag, call_params, call_items))
        except AigesError as exc:
            results.append(exc)
    return results


def unsupported(style: str, what: str) -> AigesError:
    """10122: this wrapper has no call for personalised resources."""
    return AigesError(ErrorCode.RESOURCE_UNSUPPORTED, f"this {style}-style wrapper has no {what}")


def input_bytes(data: Payload) -> bytes:
    """An input payload as the wrapper gets it: bytes, as the original SDKs give them. A payload
    that arrived as a view (of the shared-memory ring) is copied here, once; bytes pass as they are."""
    return copy_out(data)


def to_bytes(value: Any) -> bytes:
    """Result data as bytes: bytes as they are, str as UTF-8, anything else as JSON text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    return json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"result data of type {type(value).__name__} is not JSON serialisable")


ALIASES = {
    "params": "params",
    "param": "params",
    "parameters": "params",
    "reqData": "req",
    "reqdata": "req",
    "req_data": "req",
    "req": "req",
    "datas": "req",
    "data": "req",
    "usrTag": "tag",
    "userTag": "tag",
    "usr_tag": "tag",
    "tag": "tag",
    "sid": "sid",
    "persId": "pers",
    "psrId": "pers",
    "psrIds": "pers",
    "pers_id": "pers",
    "handle": "handle",
    "hdl": "handle",
}


def bind_arguments(func: Callable[..., Any], order: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """Adapt to the argument lists wrappers were written with.

    The original shims called the same method with different argument lists (§4.b.2: e.g.
    ``wrapperWrite(handle, reqData)`` and ``wrapperWrite(handle, reqData, sid)``, and
    ``wrapperCreate(..., userTag=...)`` by keyword). Each parameter is matched by its name when
    it is a known one, otherwise by its position in ``order``; extra optional parameters keep
    their defaults. The result calls ``func`` with a dict of canonical values.
    """
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return lambda values: func(*(values[name] for name in order))
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return lambda values: func(*(values[name] for name in order))
    positional: list[str] = []
    keywords: list[tuple[str, str]] = []
    for index, param in enumerate(parameters):
        if param.kind is param.VAR_KEYWORD:
            continue
        canonical = ALIASES.get(param.name)
        if canonical is None and index < len(order) and param.kind is not param.KEYWORD_ONLY:
            canonical = order[index]
        if canonical is None:
            if param.default is param.empty:
                raise PluginLoadError(
                    f"{getattr(func, '__qualname__', func)}: cannot tell what to pass as '{param.name}'"
                )
            continue
        if param.kind is param.KEYWORD_ONLY:
            keywords.append((param.name, canonical))
        else:
            positional.append(canonical)
    return lambda values: func(*(values[name] for name in positional), **{kw: values[name] for kw, name in keywords})


def call_text(func: Callable[[int], Any] | None, code: int) -> str:
    """``wrapperError(code)`` made safe: a failing or missing wrapperError gives a plain text."""
    if func is None:
        return f"wrapper error {code}"
    try:
        text = func(code)
    except Exception as exc:  # noqa: BLE001 - user code
        return f"wrapper error {code} (wrapperError raised {type(exc).__name__}: {exc})"
    return str(text) if text else f"wrapper error {code}"
