"""A streaming test wrapper. Per session, the params choose the behaviour:

    mode=echo (default)  every written chunk comes back at once as "out", with the chunk's status
    mode=collect         nothing until the last chunk, then one "out" with all chunks joined
    mode=async           results are pushed from a thread through aiges_embed.callback
    fail_create=1        wrapperCreate reports error 21

A chunk b"crash" kills the worker; b"bad" makes wrapperWrite return 22. Every create (destroy) is
appended to the file named by [wrapper] create_log (destroy_log).
"""

import os
import queue
import threading
import time
from typing import Any

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase
from aiges.types import DataEnd


class Wrapper(WrapperBase):
    serviceId = "streamer"

    def wrapperInit(self, config: dict) -> int:
        self.config = config
        self.sessions: dict[str, dict[str, Any]] = {}
        return 0

    def wrapperError(self, ret: int) -> str:
        return {21: "no capacity for a session", 22: "bad chunk"}.get(ret, "")

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response([ResponseData(key="out", data=b"once")])

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        if params.get("fail_create"):
            return SessionCreateResponse(error_code=21)
        handle = f"h-{usrTag}"
        self._note("create_log", usrTag)
        self.sessions[handle] = {
            "mode": params.get("mode", "echo"),
            "ready": [],
            "all": [],
            "tag": usrTag,
            "worker": os.environ.get("AIGES_WORKER_ID"),
        }
        return SessionCreateResponse(handle=handle)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        session = self.sessions[handle]
        for item in reqData.list:
            if item.data == b"crash":
                os._exit(9)
            if item.data == b"bad":
                return 22
            if session["mode"] == "echo":
                session["ready"].append(ResponseData(key="out", data=item.data, status=item.status))
            elif session["mode"] == "collect":
                session["all"].append(item.data)
                if item.status == DataEnd:
                    session["ready"].append(ResponseData(key="out", data=b"|".join(session["all"]), status=DataEnd))
            elif session["mode"] == "async":
                reply = Response([ResponseData(key="out", data=item.data.upper(), status=item.status)])
                if "pushes" not in session:
                    session["pushes"] = queue.Queue()
                    threading.Thread(target=self._push, args=(session["pushes"], session["tag"]), daemon=True).start()
                session["pushes"].put(reply)
        return 0

    def _push(self, pushes, tag):
        """One thread per async session pushes its results, in order, a little later."""
        from aiges_embed import callback

        while (reply := pushes.get()) is not None:
            time.sleep(0.01)
            callback(reply, tag)

    def wrapperRead(self, handle: str) -> Response:
        session = self.sessions[handle]
        ready, session["ready"] = session["ready"], []
        return Response(ready)

    def wrapperDestroy(self, handle: str) -> int:
        session = self.sessions.pop(handle)
        if "pushes" in session:
            session["pushes"].put(None)
        self._note("destroy_log", session["tag"])
        return 0

    def _note(self, log: str, tag: str) -> None:
        path = self.config.get(log)
        if path:
            with open(path, "a") as f:
                f.write(f"{tag}\n")

    def wrapperFini(self) -> int:
        return 0
