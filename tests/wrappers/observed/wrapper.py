"""A wrapper that gives every panel of the Grafana dashboard something to show: each one-shot
call is metered per app (``aiges_embed.callback_metric``), every third one fails with 7
(``mode=flaky``), ``mode=hang`` never returns (a hung worker), and sessions echo what is written.
"""

import time

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class Request:
    mode = StringParamField(key="mode", enums=["echo", "flaky", "hang"], value="echo")
    text = StringBodyField(key="text", value=b"hi")


class Reply:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "observed"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        self.calls = 0
        self.sessions: dict[str, list[ResponseData]] = {}
        return 0

    def wrapperError(self, ret: int) -> str:
        return "asked to fail" if ret == 7 else ""

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        from aiges_embed import callback_metric

        text = reqData.list[0].data if reqData.list else b""
        callback_metric(usrTag, "chars", len(text))
        mode = params.get("mode", "echo")
        if mode == "hang":
            time.sleep(3600)
        if mode == "flaky":
            self.calls += 1
            if self.calls % 3 == 0:
                return Response().response_err(7)
        return Response([ResponseData(key="text", data=text)])

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        handle = f"h-{usrTag}"
        self.sessions[handle] = []
        return SessionCreateResponse(handle=handle)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        for item in reqData.list:
            self.sessions[handle].append(ResponseData(key="text", data=item.data, status=item.status))
        return 0

    def wrapperRead(self, handle: str) -> Response:
        ready, self.sessions[handle] = self.sessions[handle], []
        return Response(ready)

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle, None)
        return 0
