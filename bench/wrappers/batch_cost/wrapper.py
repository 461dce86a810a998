"""A model whose cost is 2 ms per call plus 0.1 ms per item, for the batching benchmark: it
sleeps, like a GPU kernel the CPU waits on."""

import time

from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase


class Wrapper(WrapperBase):
    serviceId = "batch_cost"

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData):
        return self.wrapperBatchExec([params], [reqData])[0]

    def wrapperBatchExec(self, params_list, reqData_list):
        time.sleep(0.002 + 0.0001 * len(reqData_list))
        return [Response([ResponseData(key="text", data=r.get("text").data)]) for r in reqData_list]

    def wrapperFini(self):
        return 0
