"""Value objects exchanged with a wrapper, import-compatible with the original ``aiges.dto``.

These are the classes a ``wrapper.py`` receives and returns. ``ResponseData.data`` may be
assigned directly or through ``setData``; either keeps ``len`` right. Result data may be bytes,
str (sent as UTF-8), or any JSON-able value, nested included (sent as JSON text).

``callback(response, sid)`` delivers streaming results. Inside an aiges worker it is the same as
``aiges_embed.callback``: the results go to the session. Outside one (a wrapper's ``__main__``
trying itself with ``WrapperBase.run(stream=True)``) they go to the queue ``init_rq()`` made,
as in the original SDK.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
from collections.abc import Callable, Iterator
from typing import Any

from aiges.types import *  # noqa: F403 - the original dto re-exported the constants
from aiges.types import DataOnce, DataText, Status, Types
from aiges.types import __all__ as _type_names

__all__ = [
    "DataListNode",
    "DataListCls",
    "ResponseData",
    "Response",
    "SessionCreateResponse",
    "init_rq",
    "callback",
    "result_Queue",
    *_type_names,
]

_log = logging.getLogger("wrapper")


class DataListNode:
    """One input item: ``key``, ``data`` (bytes), ``len``, ``type``, ``status`` and ``desc``
    (the payload's attributes, e.g. ``encoding`` or ``sample_rate``)."""

    def __init__(
        self,
        key: str = "",
        data: bytes = b"",
        len: int | None = None,  # noqa: A002 - the original's field name
        type: int = DataText,  # noqa: A002
        status: int = DataOnce,
        desc: dict[str, str] | None = None,
    ) -> None:
        self.key = key
        self.data = data
        self.len = builtin_len(data) if len is None else len
        self.type = type
        self.status = status
        self.desc = desc if desc is not None else {}

    def get_data(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"DataListNode(key={self.key!r}, len={self.len}, type={self.type}, status={self.status})"


builtin_len = len


class DataListCls:
    """The list of input items of one call; ``get(key)`` finds one by name."""

    def __init__(self, list: list[DataListNode] | None = None) -> None:  # noqa: A002
        self.list = list if list is not None else []

    def get(self, key: str) -> DataListNode | None:
        for node in self.list:
            if node.key == key:
                return node
        return None

    def __iter__(self) -> Iterator[DataListNode]:
        return iter(self.list)

    def __len__(self) -> int:
        return builtin_len(self.list)

    def __repr__(self) -> str:
        return f"DataListCls({self.list!r})"


class ResponseData:
    """One output item. Set ``data`` (or call ``setData``); ``len`` follows it."""

    def __init__(
        self,
        key: str = "",
        data: Any = b"",
        length: int = 0,
        type: int = DataText,  # noqa: A002
        status: int = DataOnce,
        desc: dict[str, str] | None = None,
    ) -> None:
        self.key = key
        self.type = type
        self.status = status
        self.desc = desc if desc is not None else {}
        self._data: Any = b""
        self.len = 0
        self.data = data
        if length and not self.len:
            self.len = length

    @property
    def data(self) -> Any:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value
        self.len = builtin_len(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else 0

    def setData(self, data: Any) -> None:  # noqa: N802 - the original's name
        self.data = data

    def setDataType(self, data_type: int) -> None:  # noqa: N802
        if data_type not in (0, 1, 2, 3, 4):
            raise ValueError(f"data type must be 0..4, got {data_type}")
        self.type = data_type

    def toJSON(self) -> str:  # noqa: N802
        return json.dumps({"key": self.key, "len": self.len, "type": self.type, "status": self.status})

    def __repr__(self) -> str:
        return f"ResponseData(key={self.key!r}, len={self.len}, type={self.type}, status={self.status})"


class Response:
    """What ``wrapperOnceExec`` and ``wrapperRead`` return: ``list`` of ``ResponseData`` and an
    ``error_code`` (non-zero means failure; its text comes from ``wrapperError``)."""

    def __init__(self, list: list[ResponseData] | None = None, error_code: int = 0) -> None:  # noqa: A002
        self.list = list if list is not None else [ResponseData()]
        self.error_code = error_code

    def response_err(self, error_code: int) -> Response:
        self.error_code = error_code
        return self

    def toJSON(self) -> str:  # noqa: N802
        return json.dumps({"error_code": self.error_code, "list": [json.loads(d.toJSON()) for d in self.list]})

    def __repr__(self) -> str:
        return f"Response(error_code={self.error_code}, list={self.list!r})"


class SessionCreateResponse:
    """What ``wrapperCreate`` returns: the wrapper's own ``handle`` for the session, and an
    ``error_code`` (non-zero means the session could not be created)."""

    def __init__(self, handle: str = "", error_code: int = 0) -> None:
        self.handle = handle
        self.error_code = error_code

    def toJSON(self) -> str:  # noqa: N802
        return json.dumps({"handle": self.handle, "error_code": self.error_code})

    def __repr__(self) -> str:
        return f"SessionCreateResponse(handle={self.handle!r}, error_code={self.error_code})"


result_Queue: queue.Queue[Any] | None = None  # noqa: N816 - the original's name


def init_rq() -> queue.Queue[Any]:
    """A fresh queue for ``callback`` to put results on outside a worker; also ``result_Queue``."""
    global result_Queue
    result_Queue = queue.Queue()
    return result_Queue


def callback(r: Response, sid: str, *rest: Any) -> int:
    """Deliver a streaming result: to the session inside an aiges worker, else onto the queue
    ``init_rq`` made (a RuntimeError when there is none, as the original raised)."""
    embedded = sys.modules.get("aiges_embed")
    forward: Callable[..., int] | None = getattr(embedded, "callback", None)
    if forward is not None and forward is not callback:
        return forward(r, sid, *rest)
    if result_Queue is None:
        raise RuntimeError(
            "aiges.dto.callback: call init_rq() first; outside an aiges worker results go to the queue it makes"
        )
    for item in getattr(r, "list", None) or ():
        _log.info(
            "sid %s, callback: %s: len %d, type: %s, status: %s",
            sid,
            item.key,
            item.len,
            Types.get(item.type, item.type),
            Status.get(item.status, item.status),
        )
    result_Queue.put(r)
    return 0
