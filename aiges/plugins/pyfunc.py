"""Adapter for the function style: module-level functions in wrapper.py (shim v1, §4.b.1).

wrapperInit(config) -> int
wrapperOnceExec(usrTag, params, reqData, respData, psrIds, psrCnt) -> int
    reqData: tuple of dicts {key, data, len, status, type, desc}; append result dicts
    {key, data, len, status, type[, desc]} to respData.
wrapperCreate(usrTag, params, psrIds, psrCnt) -> str handle
wrapperWrite(handle, reqData) -> int
wrapperRead(handle, respData) -> int
wrapperDestroy(handle) -> int   (the historical spelling wrapperDestory is accepted)
wrapperError(ret) -> str
wrapperFini() -> int
wrapperLoadRes(reqData, resId) -> int     (optional: personalised resources; reqData as in exec)
wrapperUnloadRes(resId) -> int           (optional)

A call or a session that names personalised resources gets their ids as ``psrIds`` (a tuple of
ints) and their count as ``psrCnt``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from aiges.engine.items import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode, wrapper_error_text
from aiges.plugins.contract import (
    NO_FIELDS,
    PluginLoadError,
    batch_by_once,
    call_text,
    input_bytes,
    to_bytes,
    unsupported,
)

REQUIRED_RESULT_KEYS = ("key", "data", "len", "status", "type")


def request_tuple(items: list[DataItem]) -> tuple[dict[str, Any], ...]:
    entries = []
    for item in items:
        data = input_bytes(item.data)
        entries.append(
            {
                "key": item.key,
                "data": data,
                "len": len(data),
                "status": item.status,
                "type": item.type,
                "desc": item.desc,
            }
        )
    return tuple(entries)


def result_items(entries: list[Any], what: str, force_status: int | None = None) -> list[DataItem]:
    items = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise TypeError(f"{what}: result {index} must be a dict, got {type(entry).__name__}")
        missing = [k for k in REQUIRED_RESULT_KEYS if k not in entry]
        if missing:
            raise TypeError(f"{what}: result {index} lacks the key(s) {', '.join(missing)}")
        items.append(
            DataItem(
                key=str(entry["key"]),
                data=to_bytes(entry["data"]),
                type=int(entry["type"]),
                status=int(force_status if force_status is not None else entry["status"]),
                desc={str(k): str(v) for k, v in (entry.get("desc") or {}).items()},
            )
        )
    return items


class FunctionPlugin:
    style = "function"
    service_id = ""
    version = ""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self._destroy = getattr(module, "wrapperDestroy", None) or getattr(module, "wrapperDestory", None)
        self.service_id = str(getattr(module, "serviceId", "") or "")
        self.version = str(getattr(module, "version", "") or "")
        self.fields = NO_FIELDS
        capabilities = set()
        if hasattr(module, "wrapperOnceExec"):
            capabilities.add("once")
        if all(hasattr(module, n) for n in ("wrapperCreate", "wrapperWrite", "wrapperRead")):
            capabilities.update(("stream", "read"))
        if callable(getattr(module, "wrapperLoadRes", None)):
            capabilities.add("resources")
        self.capabilities = frozenset(capabilities)
        self._create_arity = _arity(getattr(module, "wrapperCreate", None))

    def schema(self) -> dict[str, Any] | None:
        return None

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        return batch_by_once(self, tags, params, items)

    def error_text(self, code: int) -> str:
        return call_text(getattr(self.module, "wrapperError", None), code)

    def _check(self, code: Any, error: ErrorCode, what: str) -> None:
        if code not in (0, None):
            if not isinstance(code, int):
                raise AigesError(error, f"{what} returned {code!r}, expected an int")
            raise AigesError(error, wrapper_error_text(self.error_text(code), code))

    def _function(self, name: str, error: ErrorCode) -> Callable[..., Any]:
        func = getattr(self.module, name, None)
        if func is None:
            raise AigesError(error, f"wrapper.py defines no {name}")
        function: Callable[..., Any] = func
        return function

    def init(self, config: dict[str, str]) -> None:
        init = getattr(self.module, "wrapperInit", None)
        if init is None:
            return
        ret = init(dict(config))
        if ret not in (0, None):
            raise PluginLoadError(f"wrapperInit returned {ret}: {self.error_text(ret)}")

    def fini(self) -> None:
        fini = getattr(self.module, "wrapperFini", None)
        if fini is not None:
            fini()

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]:
        func = self._function("wrapperOnceExec", ErrorCode.WRAPPER_EXEC)
        results: list[Any] = []
        ret = func(tag, params, request_tuple(items), results, tuple(res_ids), len(res_ids))
        self._check(ret, ErrorCode.WRAPPER_EXEC, "wrapperOnceExec")
        return result_items(results, "wrapperOnceExec", force_status=DataStatus.ONCE)

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        func = self._function("wrapperCreate", ErrorCode.WRAPPER_CREATE)
        args: list[Any] = [tag, params, tuple(res_ids), len(res_ids), 0]
        handle = func(*args[: self._create_arity]) if self._create_arity is not None else func(*args)
        if isinstance(handle, tuple):
            handle, code = handle
            self._check(code, ErrorCode.WRAPPER_CREATE, "wrapperCreate")
        if not handle:
            raise AigesError(ErrorCode.WRAPPER_CREATE, "wrapperCreate returned no handle")
        return str(handle)

    def write(self, handle: str, items: list[DataItem]) -> None:
        func = self._function("wrapperWrite", ErrorCode.WRAPPER_WRITE)
        self._check(func(handle, request_tuple(items)), ErrorCode.WRAPPER_WRITE, "wrapperWrite")

    def read(self, handle: str) -> list[DataItem]:
        func = self._function("wrapperRead", ErrorCode.WRAPPER_READ)
        results: list[Any] = []
        self._check(func(handle, results), ErrorCode.WRAPPER_READ, "wrapperRead")
        return result_items(results, "wrapperRead")

    def destroy(self, handle: str) -> None:
        if self._destroy is not None:
            self._check(self._destroy(handle), ErrorCode.WRAPPER_DESTROY, "wrapperDestroy")

    def cancel(self, tag: str) -> None:
        """Python wrappers learn of it through ``aiges.sdk.call_context()``."""

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        load = getattr(self.module, "wrapperLoadRes", None)
        if load is None:
            raise unsupported(self.style, "wrapperLoadRes")
        self._check(load(request_tuple(items), res_id), ErrorCode.WRAPPER_LOAD, "wrapperLoadRes")

    def unload_resource(self, res_id: int) -> None:
        unload = getattr(self.module, "wrapperUnloadRes", None)
        if unload is not None:
            self._check(unload(res_id), ErrorCode.WRAPPER_UNLOAD, "wrapperUnloadRes")


def _arity(func: Any) -> int | None:
    if func is None:
        return None
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
