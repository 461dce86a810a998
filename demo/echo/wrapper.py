"""Echo: every input item comes back under the same key, one-shot or streamed chunk by chunk."""

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class EchoRequest:
    prefix = StringParamField(key="prefix", maxLength=64, value="")
    text = StringBodyField(key="text", value=b"hello aiges", required=False)


class EchoResponse:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "echo"
    version = "v1"
    requestCls = EchoRequest()
    responseCls = EchoResponse()

    def wrapperInit(self, config: dict) -> int:
        self.sessions: dict[str, list[ResponseData]] = {}
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        prefix = params.get("prefix", "").encode()
        return Response(
            [ResponseData(key=i.key, data=prefix + i.data if prefix else i.data, type=i.type) for i in reqData.list]
        )

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        self.sessions[usrTag] = []
        return SessionCreateResponse(handle=usrTag)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        self.sessions[handle].extend(
            ResponseData(key=i.key, data=i.data, type=i.type, status=i.status) for i in reqData.list
        )
        return 0

    def wrapperRead(self, handle: str) -> Response:
        ready, self.sessions[handle] = self.sessions[handle], []
        return Response(ready)

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle, None)
        return 0

    def wrapperFini(self) -> int:
        return 0
