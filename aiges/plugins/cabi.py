"""Adapter for C/C++ engines: a ``libwrapper.so`` exporting the AIGes C ABI (wrappers/c/wrapper.h).

ctypes, not cffi: the ABI is two plain structs and a dozen functions, ctypes is in the standard
library, needs no compiler or build step on the target machine, and releases the GIL around each
foreign call, so an engine's own threads (async callbacks) can run meanwhile.

Memory follows the original loader's contract: request lists and strings live only for the call
(they point into Python bytes kept alive until it returns); what wrapperExec returns is read, then
handed to wrapperExecFree once, with the original head pointer; what wrapperRead returns stays the
engine's. ``usrTag`` strings stay alive until the call or session they tag is over, since async
engines hand them back in callbacks.

Cancellation: an engine may export ``int wrapperCancel(const char* usrTag)`` (aiges' extension,
not in the original ABI); it is called from another thread when the caller of the call or
session with that ``usrTag`` has gone, or its deadline passed, while the engine runs it.

Personalised resources: ``wrapperLoadRes(perData, resId)`` / ``wrapperUnloadRes(resId)`` when
the engine exports them; a call or a session that names resources passes their ids as
``psrIds`` / ``psrCnt`` (the array lives for the call; an engine that keeps them copies them).
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_char, c_char_p, c_int, c_uint, c_void_p
from pathlib import Path
from typing import Any

from aiges.engine.items import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode, wrapper_error_text
from aiges.plugins.contract import NO_FIELDS, PluginHost, PluginLoadError, batch_by_once, unsupported


class ParamList(Structure):
    pass


ParamList._fields_ = [
    ("key", c_char_p),
    ("value", POINTER(c_char)),
    ("vlen", c_uint),
    ("next", POINTER(ParamList)),
]


class DataList(Structure):
    pass


DataList._fields_ = [
    ("key", c_char_p),
    ("data", c_void_p),
    ("len", c_uint),
    ("type", c_int),
    ("status", c_int),
    ("desc", POINTER(ParamList)),
    ("next", POINTER(DataList)),
]

CALLBACK = CFUNCTYPE(c_int, c_void_p, POINTER(DataList), c_int)
REQUIRED = ("wrapperInit", "wrapperFini", "wrapperError")
SESSION_SYMBOLS = ("wrapperCreate", "wrapperWrite", "wrapperRead", "wrapperDestroy")


def _function(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    try:
        function = getattr(lib, name)
    except AttributeError:
        return None
    function.restype = restype
    function.argtypes = argtypes
    return function


class Marshalled:
    """C lists built from Python values, with every buffer they point into kept alive."""

    def __init__(self) -> None:
        self.keep: list[Any] = []

    def params(self, values: dict[str, str]) -> Any:
        head = POINTER(ParamList)()
        for key, value in reversed(list(values.items())):
            raw = str(value).encode("utf-8")
            node = ParamList(key.encode("utf-8"), ctypes.cast(c_char_p(raw), POINTER(c_char)), len(raw), head)
            self.keep.extend((raw, node))
            head = ctypes.pointer(node)
        return head

    def items(self, items: list[DataItem]) -> Any:
        head = POINTER(DataList)()
        for item in reversed(items):
            data = bytes(item.data)
            node = DataList(
                item.key.encode("utf-8"),
                ctypes.cast(c_char_p(data), c_void_p),
                len(data),
                item.type,
                item.status,
                self.params(item.desc),
                head,
            )
            self.keep.extend((data, node))
            head = ctypes.pointer(node)
        return head

    def ids(self, values: tuple[int, ...]) -> Any:
        """An ``unsigned int[]`` of person ids (NULL when there are none)."""
        if not values:
            return None
        array = (c_uint * len(values))(*values)
        self.keep.append(array)
        return ctypes.cast(array, c_void_p)


def read_list(head: Any, force_status: int | None = None) -> list[DataItem]:
    """Copy a C result list into DataItems."""
    items = []
    node = head
    while node:
        value = node.contents
        desc = {}
        entry = value.desc
        while entry:
            pair = entry.contents
            desc[(pair.key or b"").decode("utf-8", "replace")] = (
                ctypes.string_at(pair.value, pair.vlen).decode("utf-8", "replace") if pair.value else ""
            )
            entry = pair.next
        items.append(
            DataItem(
                key=(value.key or b"").decode("utf-8", "replace"),
                data=ctypes.string_at(value.data, value.len) if value.data and value.len else b"",
                type=value.type,
                status=force_status if force_status is not None else value.status,
                desc=desc,
            )
        )
        node = value.next
    return items


class CPlugin:
    style = "c"

    fields = NO_FIELDS

    def __init__(
        self, path: Path, host: PluginHost, async_mode: bool = False, async_wait_s: float | None = None
    ) -> None:
        self.host = host
        self.async_wait_s = async_wait_s
        try:
            self.lib = ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as exc:
            raise PluginLoadError(f"wrapper {path} cannot be loaded: {exc}") from None
        lib = self.lib
        self._init = _function(lib, "wrapperInit", c_int, [POINTER(ParamList)])
        self._fini = _function(lib, "wrapperFini", c_int, [])
        self._error = _function(lib, "wrapperError", c_char_p, [c_int])
        version = _function(lib, "wrapperVersion", c_char_p, [])
        self._exec = _function(
            lib,
            "wrapperExec",
            c_int,
            [c_char_p, POINTER(ParamList), POINTER(DataList), POINTER(POINTER(DataList)), c_void_p, c_int],
        )
        self._exec_free = _function(lib, "wrapperExecFree", c_int, [c_char_p, POINTER(POINTER(DataList))])
        self._exec_async = _function(
            lib,
            "wrapperExecAsync",
            c_int,
            [c_char_p, POINTER(ParamList), POINTER(DataList), CALLBACK, c_int, c_void_p, c_int],
        )
        self._create = _function(
            lib, "wrapperCreate", c_void_p, [c_char_p, POINTER(ParamList), CALLBACK, c_void_p, c_int, POINTER(c_int)]
        )
        self._write = _function(lib, "wrapperWrite", c_int, [c_void_p, POINTER(DataList)])
        self._read = _function(lib, "wrapperRead", c_int, [c_void_p, POINTER(POINTER(DataList))])
        self._destroy = _function(lib, "wrapperDestroy", c_int, [c_void_p])
        self._load_res = _function(lib, "wrapperLoadRes", c_int, [POINTER(DataList), c_uint])
        self._unload_res = _function(lib, "wrapperUnloadRes", c_int, [c_uint])
        self._cancel = _function(lib, "wrapperCancel", c_int, [c_char_p])
        missing = [name for name in REQUIRED if getattr(lib, name, None) is None]
        if self._exec is None and self._exec_async is None:
            missing.append("wrapperExec or wrapperExecAsync")
        if self._exec is not None and self._exec_free is None:
            missing.append("wrapperExecFree (wrapperExec needs it)")
        if missing:
            raise PluginLoadError(f"wrapper {path} does not export {', '.join(missing)}")
        self.async_mode = (async_mode and self._exec_async is not None) or self._exec is None
        self.service_id = path.stem.removeprefix("lib")
        self.version = (version() or b"").decode("utf-8", "replace") if version is not None else ""
        capabilities = {"once"}
        if all(getattr(lib, name, None) is not None for name in SESSION_SYMBOLS):
            capabilities.update(("stream", "read"))
        if self._load_res is not None:
            capabilities.add("resources")
        if self._cancel is not None:
            capabilities.add("cancel")
        self.capabilities = frozenset(capabilities)
        self._tags: dict[str, ctypes.Array[ctypes.c_char]] = {}
        self._handles: dict[str, int] = {}
        self._waiting: dict[str, tuple[threading.Event, list[tuple[list[DataItem], int]]]] = {}
        self._callback = CALLBACK(self._on_callback)

    def schema(self) -> dict[str, Any] | None:
        return None

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        return batch_by_once(self, tags, params, items)

    def error_text(self, code: int) -> str:
        text = self._error(code)
        return text.decode("utf-8", "replace") if text else f"wrapper error {code}"

    def _fail(self, error: ErrorCode, code: int) -> AigesError:
        return AigesError(error, wrapper_error_text(self.error_text(code), code))

    def _tag(self, tag: str) -> ctypes.Array[ctypes.c_char]:
        buffer = self._tags.get(tag)
        if buffer is None:
            buffer = self._tags[tag] = ctypes.create_string_buffer(tag.encode("utf-8"))
        return buffer

    def init(self, config: dict[str, str]) -> None:
        marshalled = Marshalled()
        ret = self._init(marshalled.params(config))
        if ret != 0:
            raise PluginLoadError(f"wrapperInit returned {ret}: {self.error_text(ret)}")

    def fini(self) -> None:
        self._fini()

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]:
        marshalled = Marshalled()
        request = marshalled.items(items)
        psr_ids = marshalled.ids(res_ids)
        if self.async_mode:
            return self._once_async(tag, marshalled.params(params), request, psr_ids, len(res_ids))
        usr_tag = tag.encode("utf-8")
        result = POINTER(DataList)()
        ret = self._exec(usr_tag, marshalled.params(params), request, byref(result), psr_ids, len(res_ids))
        try:
            if ret != 0:
                raise self._fail(ErrorCode.WRAPPER_EXEC, ret)
            return read_list(result, force_status=DataStatus.ONCE)
        finally:
            if result:
                self._exec_free(usr_tag, byref(result))

    def _once_async(self, tag: str, params: Any, request: Any, psr_ids: Any, psr_count: int) -> list[DataItem]:
        done = threading.Event()
        box: list[tuple[list[DataItem], int]] = []
        self._waiting[tag] = (done, box)
        try:
            ret = self._exec_async(
                ctypes.cast(self._tag(tag), c_char_p), params, request, self._callback, 0, psr_ids, psr_count
            )
            if ret != 0:
                raise self._fail(ErrorCode.WRAPPER_EXEC, ret)
            if not done.wait(self.async_wait_s):
                raise AigesError(
                    ErrorCode.ONCE_TIMEOUT, f"wrapperExecAsync gave no result within {self.async_wait_s} s"
                )
            items, code = box[0]
            if code != 0:
                raise self._fail(ErrorCode.WRAPPER_ASYNC, code)
            return [DataItem(i.key, i.data, i.type, DataStatus.ONCE, i.desc) for i in items]
        finally:
            self._waiting.pop(tag, None)
            self._tags.pop(tag, None)

    def _on_callback(self, usr_tag: int, result: Any, ret: int) -> int:
        """Called by the engine, from any thread: copy the list now, then route it."""
        try:
            tag = ctypes.string_at(usr_tag).decode("utf-8", "replace") if usr_tag else ""
            items = read_list(result)
            waiting = self._waiting.get(tag)
            if waiting is not None:
                waiting[1].append((items, ret))
                waiting[0].set()
                return 0
            if tag in self._handles:
                if ret != 0:
                    return self.host.output_failed(tag, ErrorCode.WRAPPER_ASYNC, self.error_text(ret))
                return self.host.output(tag, items)
            return -1
        except Exception:  # noqa: BLE001 - an exception must never unwind into C
            return -1

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        marshalled = Marshalled()
        error = c_int(0)
        callback = self._callback if self.async_mode else CALLBACK()
        handle = self._create(
            ctypes.cast(self._tag(tag), c_char_p),
            marshalled.params(params),
            callback,
            marshalled.ids(res_ids),
            len(res_ids),
            byref(error),
        )
        if error.value != 0 or not handle:
            self._tags.pop(tag, None)
            raise self._fail(ErrorCode.WRAPPER_CREATE, error.value or -1)
        self._handles[tag] = handle
        return tag

    def write(self, handle: str, items: list[DataItem]) -> None:
        marshalled = Marshalled()
        ret = self._write(self._session(handle), marshalled.items(items))
        if ret != 0:
            raise self._fail(ErrorCode.WRAPPER_WRITE, ret)

    def read(self, handle: str) -> list[DataItem]:
        result = POINTER(DataList)()
        ret = self._read(self._session(handle), byref(result))
        if ret != 0:
            raise self._fail(ErrorCode.WRAPPER_READ, ret)
        return read_list(result)

    def destroy(self, handle: str) -> None:
        pointer = self._handles.pop(handle, None)
        self._tags.pop(handle, None)
        if pointer is not None:
            ret = self._destroy(pointer)
            if ret != 0:
                raise self._fail(ErrorCode.WRAPPER_DESTROY, ret)

    def cancel(self, tag: str) -> None:
        """``wrapperCancel(usrTag)``, aiges' extension of the ABI, when the engine exports it."""
        if self._cancel is not None:
            self._cancel(tag.encode("utf-8"))

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        if self._load_res is None:
            raise unsupported(self.style, "wrapperLoadRes")
        ret = self._load_res(Marshalled().items(items), res_id)
        if ret != 0:
            raise self._fail(ErrorCode.WRAPPER_LOAD, ret)

    def unload_resource(self, res_id: int) -> None:
        if self._unload_res is not None:
            ret = self._unload_res(res_id)
            if ret != 0:
                raise self._fail(ErrorCode.WRAPPER_UNLOAD, ret)

    def _session(self, handle: str) -> int:
        pointer = self._handles.get(handle)
        if pointer is None:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no engine session {handle}")
        return pointer
