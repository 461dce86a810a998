"""A wrapper with declared params and inputs, for the schema and validation tests."""

from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import (
    BooleanParamField,
    ImageBodyField,
    IntegerParamField,
    NumberParamField,
    StringBodyField,
    StringParamField,
    WrapperBase,
)


class Request:
    lang = StringParamField(key="lang", enums=["en", "zh"], required=True, value="en")
    top_k = IntegerParamField(key="top_k", minimum=1, maximum=10, value=3)
    temperature = NumberParamField(key="temperature", minimum=0, maximum=2, value=1)
    verbose = BooleanParamField(key="verbose")
    prompt = StringParamField(key="prompt", maxLength=5)
    text = StringBodyField(key="text", value=b"hello", required=True)  # inputs are optional by default
    image = ImageBodyField(key="image", required=False)


class Reply:
    result = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "declared"
    version = "v2"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        text = reqData.get("text").data.decode()
        return Response([ResponseData(key="result", data={"params": params, "text": text})])

    def wrapperCreate(self, params, sid, persId=0, usrTag=""):
        return SessionCreateResponse(handle=usrTag)

    def wrapperWrite(self, handle, reqData):
        return 0

    def wrapperRead(self, handle):
        return Response([])

    def wrapperFini(self):
        return 0
