"""A wrapper that takes its time and writes down what it ran, for the overload tests.

Each one-shot call sleeps ``sleep`` seconds (param; default 0) and is noted in the file named by
[wrapper] calls_log: ``start <label> <time.time()>`` when it starts and ``end <label>`` when it
ends, so a test can tell which calls reached the wrapper, in what order, and when. With
``mode=cooperative`` it sleeps in steps of 10 ms and stops early once ``aiges.sdk.call_context()``
says the call is cancelled (noting ``stopped <label> <remaining>``).
"""

import time

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class Request:
    text = StringBodyField(key="text", value=b"hi", required=False)
    sleep = StringParamField(key="sleep", value="0")
    label = StringParamField(key="label", value="")
    mode = StringParamField(key="mode", value="plain")


class Reply:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "patient"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        self.log = config.get("calls_log", "")
        return 0

    def _note(self, line: str) -> None:
        if self.log:
            with open(self.log, "a") as f:
                f.write(line + "\n")

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        label = params.get("label", "")
        seconds = float(params.get("sleep", "0") or 0)
        self._note(f"start {label} {time.time():.6f}")
        if params.get("mode") == "cooperative":
            from aiges.sdk import call_context

            context = call_context()
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                if context.cancelled:
                    remaining = context.remaining()
                    self._note(f"stopped {label} {remaining if remaining is not None else 'none'}")
                    return Response([ResponseData(key="text", data=b"stopped")])
                time.sleep(0.01)
        elif seconds:
            time.sleep(seconds)
        self._note(f"end {label}")
        return Response([ResponseData(key=i.key, data=i.data, type=i.type) for i in reqData.list])

    def wrapperFini(self) -> int:
        return 0
