"""Adapter for the class style: ``class Wrapper(WrapperBase)`` in wrapper.py (SDK §4.c).

Personalised resources: ``wrapperLoadRes(reqData, resId)`` / ``wrapperUnloadRes(resId)`` with
the id as an int (as the SDK declares them), the first item also carrying it as its
``patch_id`` attribute (where the original C shim read it); a call or a session that names
resources gets the first as its ``persId`` (as the shim passed it), 0 when it names none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiges.dto import DataListCls, DataListNode
from aiges.engine.items import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode, wrapper_error_text
from aiges.plugins.contract import (
    DeclaredFields,
    PluginLoadError,
    bind_arguments,
    call_text,
    input_bytes,
    to_bytes,
    unsupported,
)

ONCE_ORDER = ("params", "req", "tag", "pers")
CREATE_ORDER = ("params", "sid", "pers", "tag")
WRITE_ORDER = ("handle", "req", "sid")
READ_ORDER = ("handle", "sid")
DESTROY_ORDER = ("handle", "sid")


def request_list(items: list[DataItem]) -> DataListCls:
    nodes = []
    for item in items:
        data = input_bytes(item.data)
        nodes.append(DataListNode(item.key, data, len(data), item.type, item.status, item.desc))
    return DataListCls(nodes)


def result_items(response: Any, what: str, force_status: int | None = None) -> list[DataItem]:
    """``Response.list`` -> DataItems. The default placeholder item (no key, no data) is dropped."""
    entries = getattr(response, "list", None)
    if entries is None:
        raise TypeError(f"{what} must return a Response, got {type(response).__name__}")
    items = []
    for entry in entries or ():
        if isinstance(entry, dict):
            key, data = entry.get("key", ""), entry.get("data", b"")
            data_type, status, desc = entry.get("type", 0), entry.get("status", 3), entry.get("desc")
        else:
            key, data = getattr(entry, "key", ""), getattr(entry, "data", b"")
            data_type, status = getattr(entry, "type", 0), getattr(entry, "status", 3)
            desc = getattr(entry, "desc", None)
        payload = to_bytes(data)
        if not key and not payload:
            continue
        items.append(
            DataItem(
                key=str(key),
                data=payload,
                type=int(data_type or 0),
                status=int(force_status if force_status is not None else (status if status is not None else 3)),
                desc={str(k): str(v) for k, v in (desc or {}).items()},
            )
        )
    return items


class ClassPlugin:
    style = "class"

    def __init__(self, wrapper: Any, async_mode: bool = False) -> None:
        self.wrapper = wrapper
        cls = type(wrapper)
        self.service_id = str(getattr(cls, "serviceId", "") or "")
        self.version = str(getattr(cls, "version", "") or "")
        mappings = getattr(cls, "__mappings__", None) or {}
        self.fields = DeclaredFields(
            dict(mappings.get("params", {})), dict(mappings.get("inputs", {})), dict(mappings.get("accepts", {}))
        )
        self._once = self._bind("wrapperOnceExec", ONCE_ORDER)
        self._create = self._bind("wrapperCreate", CREATE_ORDER)
        self._write = self._bind("wrapperWrite", WRITE_ORDER)
        self._read = self._bind("wrapperRead", READ_ORDER)
        self._destroy = self._bind("wrapperDestroy", DESTROY_ORDER)
        self._sids: dict[str, str] = {}
        capabilities = {"once"}
        if callable(getattr(wrapper, "wrapperLoadRes", None)):
            capabilities.add("resources")
        if _overrides(cls, "wrapperCreate"):
            capabilities.add("stream")
            if not async_mode:  # asyncMode: session results come only through aiges_embed.callback
                capabilities.add("read")
        if callable(getattr(wrapper, "wrapperBatchExec", None)):
            capabilities.add("batch")
        self.capabilities = frozenset(capabilities)

    def _bind(self, name: str, order: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
        method = getattr(self.wrapper, name, None)
        if method is None:

            def missing(values: dict[str, Any]) -> Any:
                raise NotImplementedError(f"the Wrapper class has no {name}")

            return missing
        return bind_arguments(method, order)

    def error_text(self, code: int) -> str:
        return call_text(getattr(self.wrapper, "wrapperError", None), code)

    def schema(self) -> dict[str, Any] | None:
        from aiges.schema import build_schema

        return build_schema(type(self.wrapper))

    def init(self, config: dict[str, str]) -> None:
        try:
            ret = self.wrapper.wrapperInit(dict(config))
        except NotImplementedError:
            raise PluginLoadError("the Wrapper class does not implement wrapperInit") from None
        if ret not in (0, None):
            raise PluginLoadError(f"wrapperInit returned {ret}: {self.error_text(ret)}")

    def fini(self) -> None:
        fini = getattr(self.wrapper, "wrapperFini", None)
        if fini is not None:
            fini()

    def _check(self, code: Any, error: ErrorCode, what: str) -> None:
        if code not in (0, None):
            if not isinstance(code, int):
                raise AigesError(error, f"{what} returned {code!r}, expected an int")
            raise AigesError(error, wrapper_error_text(self.error_text(code), code))

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]:
        values = {
            "params": params,
            "req": request_list(items),
            "tag": tag,
            "pers": res_ids[0] if res_ids else 0,
            "sid": params.get("sid", ""),
        }
        response = self._once(values)
        if response is None:
            raise AigesError(ErrorCode.WRAPPER_EXEC, "wrapperOnceExec returned None, expected a Response")
        self._check(getattr(response, "error_code", 0), ErrorCode.WRAPPER_EXEC, "wrapperOnceExec")
        return result_items(response, "wrapperOnceExec", force_status=DataStatus.ONCE)

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        """Several one-shot calls in one ``wrapperBatchExec(params_list, reqData_list)``; each
        caller gets its own result, or its own error."""
        responses = self.wrapper.wrapperBatchExec(params, [request_list(i) for i in items])
        if not isinstance(responses, (list, tuple)) or len(responses) != len(items):
            count = len(responses) if isinstance(responses, (list, tuple)) else type(responses).__name__
            raise AigesError(
                ErrorCode.WRAPPER_EXEC, f"wrapperBatchExec returned {count} for {len(items)} calls, expected a list"
            )
        results: list[list[DataItem] | AigesError] = []
        for response in responses:
            try:
                if response is None:
                    raise AigesError(ErrorCode.WRAPPER_EXEC, "wrapperBatchExec returned None for this call")
                self._check(getattr(response, "error_code", 0), ErrorCode.WRAPPER_EXEC, "wrapperBatchExec")
                results.append(result_items(response, "wrapperBatchExec", force_status=DataStatus.ONCE))
            except AigesError as exc:
                results.append(exc)
            except Exception as exc:  # noqa: BLE001 - a malformed response item
                results.append(AigesError(ErrorCode.WRAPPER_EXEC, f"{type(exc).__name__}: {exc}"))
        return results

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        sid = params.get("sid", tag)
        result = self._create({"params": params, "sid": sid, "pers": res_ids[0] if res_ids else 0, "tag": tag})
        if result is None:
            raise AigesError(ErrorCode.WRAPPER_CREATE, "wrapperCreate returned None, expected a SessionCreateResponse")
        if isinstance(result, str):
            handle, code = result, 0
        else:
            handle, code = getattr(result, "handle", ""), getattr(result, "error_code", 0)
        self._check(code, ErrorCode.WRAPPER_CREATE, "wrapperCreate")
        handle = str(handle or tag)
        self._sids[handle] = sid
        return handle

    def write(self, handle: str, items: list[DataItem]) -> None:
        values = {"handle": handle, "req": request_list(items), "sid": self._sids.get(handle, "")}
        self._check(self._write(values), ErrorCode.WRAPPER_WRITE, "wrapperWrite")

    def read(self, handle: str) -> list[DataItem]:
        response = self._read({"handle": handle, "sid": self._sids.get(handle, "")})
        if response is None:
            return []
        if isinstance(response, list):
            return result_items(_Listed(response), "wrapperRead")
        self._check(getattr(response, "error_code", 0), ErrorCode.WRAPPER_READ, "wrapperRead")
        return result_items(response, "wrapperRead")

    def destroy(self, handle: str) -> None:
        sid = self._sids.pop(handle, "")
        self._check(self._destroy({"handle": handle, "sid": sid}), ErrorCode.WRAPPER_DESTROY, "wrapperDestroy")

    def cancel(self, tag: str) -> None:
        """Python wrappers learn of it through ``aiges.sdk.call_context()``."""

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        load = getattr(self.wrapper, "wrapperLoadRes", None)
        if load is None:
            raise unsupported(self.style, "wrapperLoadRes")
        request = request_list(items)
        if request.list:
            request.list[0].desc = {**request.list[0].desc, "patch_id": str(res_id)}
        self._check(load(request, res_id), ErrorCode.WRAPPER_LOAD, "wrapperLoadRes")

    def unload_resource(self, res_id: int) -> None:
        unload = getattr(self.wrapper, "wrapperUnloadRes", None)
        if unload is not None:
            self._check(unload(res_id), ErrorCode.WRAPPER_UNLOAD, "wrapperUnloadRes")


class _Listed:
    """A bare list returned by wrapperRead (the SDK's documented default) seen as a Response."""

    def __init__(self, entries: list[Any]) -> None:
        self.list = entries


def _overrides(cls: type, name: str) -> bool:
    from aiges.sdk import WrapperBase

    method = getattr(cls, name, None)
    return method is not None and method is not getattr(WrapperBase, name, None)
