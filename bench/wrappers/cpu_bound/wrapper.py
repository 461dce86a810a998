"""About 5 ms of numpy work per call (matrix products), for the worker-scaling benchmark."""

import numpy as np

from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase

SIZE = 200


class Wrapper(WrapperBase):
    serviceId = "cpu_bound"

    def wrapperInit(self, config):
        rng = np.random.default_rng(0)
        self.matrix = rng.standard_normal((SIZE, SIZE))
        self.rounds = int(config.get("rounds", "10"))
        return 0

    def wrapperOnceExec(self, params, reqData):
        value = self.matrix
        for _ in range(self.rounds):
            value = np.tanh(value @ self.matrix / SIZE)
        return Response([ResponseData(key="text", data=f"{float(value.sum()):.6f}")])

    def wrapperFini(self):
        return 0
