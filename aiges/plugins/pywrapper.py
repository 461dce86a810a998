"""Adapter for the ``python_wrapper`` style (PyPI ``aiges-wrapper``; the current AIGes loader runs
it with ``WIDGET_PLUGIN_MODE=py``): a module with a ``python_wrapper.WrapperBase`` subclass of
any name, whose methods return codes and ``(results, code)`` pairs::

    init(cfg) -> int                         fini() -> int           version() -> str
    exec(usr_tag, params, data_list, psr_ids) -> (list[WrapperData], int)
    create(usr_tag, params, psr_ids) -> (handle, int)
    write(handle, data_list) -> int          read(handle) -> (list[WrapperData], int)
    destroy(handle) -> int                   error(code) -> str
    load_res(data_list, res_id) -> int       unload_res(res_id) -> int   (personalised resources)

The original runs the class behind a gRPC server and answers its callbacks (``meter_custom``,
``async_callback``, ...) from a Go-side callback service; the package's methods call
``self._callback_stub.<Rpc>(request)``. Here that stub is ``CallbackStub``: it hands each
callback to the worker, which forwards it to the server (usage counters and wrapper metrics in
``/metrics``, load-balancer labels in the registry value, trace and event log lines, and session
output for ``async_callback``).
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from aiges.engine.items import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode, wrapper_error_text
from aiges.plugins.contract import (
    NO_FIELDS,
    PluginHost,
    PluginLoadError,
    batch_by_once,
    input_bytes,
    to_bytes,
    unsupported,
)

SESSION_METHODS = ("create", "write", "read", "destroy")


def find_wrapper_class(module: ModuleType) -> type | None:
    """The module's ``python_wrapper.WrapperBase`` subclass, if it has one (by name order, as the
    original's loader picks it; one defined in the module itself first)."""
    try:
        from python_wrapper import WrapperBase
    except ImportError:
        return None
    found = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, WrapperBase) and obj is not WrapperBase and not inspect.isabstract(obj)
    ]
    own = [cls for cls in found if cls.__module__ == module.__name__]
    return (own or found)[0] if found else None


def wrapper_data(items: list[DataItem]) -> list[Any]:
    from python_wrapper import WrapperData

    return [
        WrapperData(key=i.key, data=input_bytes(i.data), type=i.type, status=i.status, desc=dict(i.desc)) for i in items
    ]


def data_items(results: Any, what: str, force_status: int | None = None) -> list[DataItem]:
    """``list[WrapperData]`` (or anything with key/data/type/status/desc) -> DataItems."""
    items = []
    for index, entry in enumerate(results or ()):
        try:
            key, data = entry.key, entry.data
        except AttributeError:
            raise TypeError(f"{what}: result {index} must be a WrapperData, got {type(entry).__name__}") from None
        status = force_status if force_status is not None else getattr(entry, "status", DataStatus.ONCE)
        desc = getattr(entry, "desc", None) or {}
        items.append(
            DataItem(
                key=str(key),
                data=to_bytes(data),
                type=int(getattr(entry, "type", 0) or 0),
                status=int(status),
                desc={str(k): str(v) for k, v in desc.items()},
            )
        )
    return items


class CallbackResult:
    """What a callback RPC returns to the package's methods: ``.code``, as CallbackResponse."""

    __slots__ = ("code", "err_msg")

    def __init__(self, code: int = 0, err_msg: str = "") -> None:
        self.code = code
        self.err_msg = err_msg


class CallbackStub:
    """Stands where the original has its gRPC CallbackService stub: one method per RPC, taking
    the package's own request messages."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host

    def MeterCustom(self, request: Any) -> CallbackResult:  # noqa: N802 - the RPC's name
        self.host.usage(request.handle, self.host.app_id(request.handle), "", request.key, request.count)
        return CallbackResult()

    def MeterCustomEx(self, request: Any) -> CallbackResult:  # noqa: N802
        self.host.usage(request.handle, request.appid, request.channel, request.func_name, request.count)
        return CallbackResult()

    def TraceLog(self, request: Any) -> CallbackResult:  # noqa: N802
        self.host.trace(request.handle, "trace", request.key, request.value)
        return CallbackResult()

    def EventLog(self, request: Any) -> CallbackResult:  # noqa: N802
        self.host.trace(request.handle, "event", request.key, request.value)
        return CallbackResult()

    def MetricsLog(self, request: Any) -> CallbackResult:  # noqa: N802
        self.host.metric(request.name, dict(request.labels), request.value)
        return CallbackResult()

    def UpdateLbExtra(self, request: Any) -> CallbackResult:  # noqa: N802
        self.host.lb_labels(dict(request.labels))
        return CallbackResult()

    def AsyncCallback(self, request: Any) -> CallbackResult:  # noqa: N802
        if request.err_code:
            code = self.host.output_failed(
                request.usr_tag, ErrorCode.WRAPPER_ASYNC, wrapper_error_text(request.err_msg, request.err_code)
            )
        else:
            items = [
                DataItem(key=d.key, data=bytes(d.data), type=d.type, status=d.status, desc=dict(d.desc))
                for d in request.data_list
            ]
            code = self.host.output(request.usr_tag, items)
        return CallbackResult(code)


class PyWrapperPlugin:
    style = "python_wrapper"
    fields = NO_FIELDS

    def __init__(self, wrapper_class: type, host: PluginHost) -> None:
        from python_wrapper import WrapperBase

        try:
            self.wrapper = wrapper_class()
        except Exception as exc:  # noqa: BLE001 - user code
            raise PluginLoadError(f"{wrapper_class.__name__}() failed: {type(exc).__name__}: {exc}") from None
        self.wrapper._callback_stub = CallbackStub(host)
        self.service_id = str(getattr(wrapper_class, "serviceId", "") or "")
        self.version = ""
        capabilities = set()
        if getattr(wrapper_class, "exec") is not WrapperBase.exec:  # noqa: B009 - "type" has no "exec" for mypy
            capabilities.add("once")
        if all(getattr(wrapper_class, m) is not getattr(WrapperBase, m) for m in SESSION_METHODS):
            capabilities.update(("stream", "read"))
        if callable(getattr(self.wrapper, "load_res", None)):  # a python_wrapper release without it: 10122
            capabilities.add("resources")
        self.capabilities = frozenset(capabilities)

    def schema(self) -> dict[str, Any] | None:
        return None

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        return batch_by_once(self, tags, params, items)

    def error_text(self, code: int) -> str:
        try:
            return str(self.wrapper.error(code) or f"error code {code}")
        except Exception as exc:  # noqa: BLE001 - user code
            return f"error code {code} (error() raised {type(exc).__name__}: {exc})"

    def _check(self, code: Any, error: ErrorCode, what: str) -> None:
        if code not in (0, None):
            if not isinstance(code, int):
                raise AigesError(error, f"{what} returned {code!r} as its code, expected an int")
            raise AigesError(error, wrapper_error_text(self.error_text(code), code))

    @staticmethod
    def _pair(value: Any, what: str, error: ErrorCode) -> tuple[Any, Any]:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise AigesError(error, f"{what} returned {type(value).__name__}, expected a (result, code) pair")
        return value[0], value[1]

    def init(self, config: dict[str, str]) -> None:
        code = self.wrapper.init(dict(config))
        if code not in (0, None):
            raise PluginLoadError(f"init returned {code}: {self.error_text(code)}")
        try:
            self.version = str(self.wrapper.version() or "")
        except Exception:  # noqa: BLE001 - a version is only a label
            self.version = ""

    def fini(self) -> None:
        self.wrapper.fini()

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]:
        results, code = self._pair(
            self.wrapper.exec(tag, dict(params), wrapper_data(items), list(res_ids)), "exec", ErrorCode.WRAPPER_EXEC
        )
        self._check(code, ErrorCode.WRAPPER_EXEC, "exec")
        return data_items(results, "exec", force_status=DataStatus.ONCE)

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        handle, code = self._pair(
            self.wrapper.create(tag, dict(params), list(res_ids)), "create", ErrorCode.WRAPPER_CREATE
        )
        self._check(code, ErrorCode.WRAPPER_CREATE, "create")
        if not handle:
            raise AigesError(ErrorCode.WRAPPER_CREATE, "create returned no handle")
        return str(handle)

    def write(self, handle: str, items: list[DataItem]) -> None:
        self._check(self.wrapper.write(handle, wrapper_data(items)), ErrorCode.WRAPPER_WRITE, "write")

    def read(self, handle: str) -> list[DataItem]:
        results, code = self._pair(self.wrapper.read(handle), "read", ErrorCode.WRAPPER_READ)
        self._check(code, ErrorCode.WRAPPER_READ, "read")
        return data_items(results, "read")

    def destroy(self, handle: str) -> None:
        self._check(self.wrapper.destroy(handle), ErrorCode.WRAPPER_DESTROY, "destroy")

    def cancel(self, tag: str) -> None:
        """Python wrappers learn of it through ``aiges.sdk.call_context()``."""

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        load = getattr(self.wrapper, "load_res", None)
        if load is None:
            raise unsupported(self.style, "load_res (this python_wrapper release has none)")
        self._check(load(wrapper_data(items), res_id), ErrorCode.WRAPPER_LOAD, "load_res")

    def unload_resource(self, res_id: int) -> None:
        unload = getattr(self.wrapper, "unload_res", None)
        if unload is not None:
            self._check(unload(res_id), ErrorCode.WRAPPER_UNLOAD, "unload_res")
