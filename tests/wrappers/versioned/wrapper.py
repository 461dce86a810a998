"""Echo that says which version answers: every output is ``<answer>:<input>``, ``answer`` from the
wrapperInit config (default "v1"). Param ``delay_ms`` slows a call or a session's writes; config
``refuse_sample = "true"`` fails the declared sample call (a self-test that does not pass)."""

import time

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import IntegerParamField, StringBodyField, WrapperBase

SAMPLE = b"ping"


class VersionedRequest:
    delay_ms = IntegerParamField(key="delay_ms", minimum=0, maximum=60000, value=0)
    text = StringBodyField(key="text", value=SAMPLE)


class VersionedResponse:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "versioned"
    version = "v1"
    requestCls = VersionedRequest()
    responseCls = VersionedResponse()

    def wrapperInit(self, config: dict) -> int:
        self.answer = config.get("answer", "v1").encode()
        self.refuse_sample = config.get("refuse_sample") == "true"
        self.sessions: dict[str, list[ResponseData]] = {}
        self.delays: dict[str, float] = {}
        return 0

    def _out(self, data: bytes) -> bytes:
        return self.answer + b":" + data

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        if self.refuse_sample and reqData.list and reqData.list[0].data == SAMPLE:
            return Response().response_err(9)
        time.sleep(int(params.get("delay_ms", 0) or 0) / 1000)
        return Response([ResponseData(key=i.key, data=self._out(i.data), type=i.type) for i in reqData.list])

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        self.sessions[usrTag] = []
        self.delays[usrTag] = int(params.get("delay_ms", 0) or 0) / 1000
        return SessionCreateResponse(handle=usrTag)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        time.sleep(self.delays.get(handle, 0))
        self.sessions[handle].extend(
            ResponseData(key=i.key, data=self._out(i.data), type=i.type, status=i.status) for i in reqData.list
        )
        return 0

    def wrapperRead(self, handle: str) -> Response:
        ready, self.sessions[handle] = self.sessions[handle], []
        return Response(ready)

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle, None)
        self.delays.pop(handle, None)
        return 0

    def wrapperFini(self) -> int:
        return 0
