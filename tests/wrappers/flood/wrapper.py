"""A streaming wrapper whose sessions produce output without end, for clients that never read it.

Per session, params choose how: mode=read (default) - every wrapperRead returns a chunk of
``kb`` KiB (the worker reads after each write and, once the input has ended, every 50 ms);
mode=push - a thread of the session's own pushes a chunk through the callback every
``interval_ms`` until the session is destroyed.
"""

import threading
from typing import Any

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import StringBodyField, WrapperBase


class Request:
    data = StringBodyField(key="in", value=b"go")


class Reply:
    out = StringBodyField(key="out")


class Wrapper(WrapperBase):
    serviceId = "flood"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        self.sessions: dict[str, dict[str, Any]] = {}
        return 0

    def wrapperFini(self) -> int:
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response([ResponseData(key="out", data=b"once")])

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        chunk = b"x" * (int(params.get("kb", "256")) << 10)
        stop = threading.Event()
        self.sessions[usrTag] = {"chunk": chunk, "stop": stop, "mode": params.get("mode", "read")}
        if params.get("mode") == "push":
            interval = int(params.get("interval_ms", "20")) / 1000
            threading.Thread(target=self._push, args=(usrTag, chunk, stop, interval), daemon=True).start()
        return SessionCreateResponse(handle=usrTag)

    def _push(self, tag, chunk, stop, interval):
        from aiges_embed import callback

        while not stop.wait(interval):
            if callback(Response([ResponseData(key="out", data=chunk, status=1)]), tag) != 0:
                return

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        return 0

    def wrapperRead(self, handle: str) -> Response:
        session = self.sessions[handle]
        if session["mode"] != "read":
            return Response([])
        return Response([ResponseData(key="out", data=session["chunk"], status=1)])

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle)["stop"].set()
        return 0
