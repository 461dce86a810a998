"""A batching test wrapper: wrapperBatchExec answers each call with its own text, the size of
the batch it ran in, and its place in it. Param mode=error fails only that call; mode=short makes
the whole batch return one Response too few; mode=hang hangs the batch."""

import json
import time

from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase


class Wrapper(WrapperBase):
    serviceId = "batcher"

    def wrapperInit(self, config):
        return 0

    def wrapperError(self, ret):
        return "item refused" if ret == 9 else ""

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return self.wrapperBatchExec([params], [reqData])[0]

    def wrapperBatchExec(self, params_list, reqData_list):
        modes = [p.get("mode", "") for p in params_list]
        if "hang" in modes:
            time.sleep(3600)
        time.sleep(0.02)
        responses = []
        for index, (params, req) in enumerate(zip(params_list, reqData_list, strict=False)):
            if params.get("mode") == "error":
                responses.append(Response().response_err(9))
                continue
            text = req.get("text").data.decode()
            body = {"text": text, "batch": len(params_list), "index": index}
            responses.append(Response([ResponseData(key="text", data=json.dumps(body))]))
        if "short" in modes:
            responses.pop()
        return responses

    def wrapperFini(self):
        return 0
