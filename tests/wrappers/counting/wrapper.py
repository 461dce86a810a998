"""Echo that writes down every call it gets: a line per one-shot call ("once") and per session
("create"), in the file named by [wrapper] calls_log, so a test can tell that a refused request
reached nothing."""

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import StringBodyField, WrapperBase


class Request:
    text = StringBodyField(key="text", value=b"hi", required=False)


class Reply:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "counting"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        self.log = config.get("calls_log", "")
        self.sessions: dict[str, list[ResponseData]] = {}
        return 0

    def _note(self, what: str) -> None:
        if self.log:
            with open(self.log, "a") as f:
                f.write(what + "\n")

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        self._note("once")
        return Response([ResponseData(key=i.key, data=i.data, type=i.type) for i in reqData.list])

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        self._note("create")
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
