from aiges.dto import Response
from aiges.sdk import WrapperBase


class Wrapper(WrapperBase):
    def wrapperInit(self, config):
        return 42

    def wrapperError(self, ret):
        return "the model file is missing"

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response()
