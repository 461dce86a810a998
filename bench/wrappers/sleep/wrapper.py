"""The overload benchmark's model for aiges (``bench/overload.py``): each call sleeps 20 ms (a GPU
kernel the CPU waits on) after logging its start against the caller's send time (the ``sent``
input) in ``bench/start_log.py``'s log, named by ``OVERLOAD_START_LOG``."""

import sys
import time
from pathlib import Path

from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from start_log import from_environment  # noqa: E402


class Wrapper(WrapperBase):
    serviceId = "sleep"

    def wrapperInit(self, config):
        self.log, self.service_s = from_environment()
        return 0

    def wrapperOnceExec(self, params, reqData):
        sent = reqData.get("sent").data
        self.log.started(sent)
        time.sleep(self.service_s)
        return Response([ResponseData(key="sent", data=sent)])

    def wrapperFini(self):
        return 0
