"""Answers any input with one declared output: "text", all input items' data joined. Fronts pass
inputs a wrapper does not declare on to it, so a wrapper that echoed each item under its own
name (demo/echo) would fail (10106) for generated names; this one never fails."""

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class Request:
    prefix = StringParamField(key="prefix", maxLength=64, value="")
    text = StringBodyField(key="text", value=b"hello")


class Reply:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "joiner"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        joined = params.get("prefix", "").encode() + b"".join(item.data for item in reqData.list)
        return Response([ResponseData(key="text", data=joined)])

    def wrapperFini(self) -> int:
        return 0
