"""A test wrapper whose behaviour is chosen per call with the param ``mode``."""

import logging
import os
import signal
import time

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class Request:
    mode = StringParamField(
        key="mode",
        enums=[
            "echo",
            "error",
            "raise",
            "undeclared",
            "exit",
            "segv",
            "hang",
            "env",
            "sleep",
            "json",
            "none",
            "print",
            "flaky",
        ],
        value="echo",
    )
    text = StringBodyField(key="text", value=b"hi")


class Reply:
    text = StringBodyField(key="text")


class Wrapper(WrapperBase):
    serviceId = "faulty"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        self.config = config
        time.sleep(float(config.get("init_delay", "0")))
        while os.path.exists(config.get("hang_while", "/nonexistent")):  # a hung init, while the file exists
            time.sleep(0.05)
        return 0

    def wrapperError(self, ret: int) -> str:
        return "seven is not allowed" if ret == 7 else ""

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        mode = params.get("mode", "echo")
        if mode == "error":
            return Response().response_err(7)
        if mode == "raise":
            raise ValueError("boom from the wrapper")
        if mode == "undeclared":
            return Response([ResponseData(key="surprise", data=b"x")])
        if mode == "exit":
            os._exit(3)
        if mode == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "hang":
            time.sleep(3600)
        if mode == "sleep":
            time.sleep(float(params.get("seconds", "0.1")))
        if mode == "none":
            return None  # type: ignore[return-value]  # on purpose: the loader must refuse a None reply
        if mode == "flaky":
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls % 3 == 0:
                return Response().response_err(7)
        if mode == "print":
            print("hello from the wrapper's stdout", flush=True)
            logging.getLogger("mymodel").warning("a warning from the wrapper's logger")
        if mode == "env":
            time.sleep(float(params.get("seconds", "0")))
            info = {
                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "worker": os.environ.get("AIGES_WORKER_ID"),
                "pid": os.getpid(),
                "config": self.config,
                "sid": params.get("sid"),
                "usrTag": usrTag,
            }
            return Response([ResponseData(key="text", data=info)])
        if mode == "json":
            return Response([ResponseData(key="text", data={"nested": {"list": [1, 2.5, "x"], "ok": True}})])
        return Response([ResponseData(key=i.key, data=i.data, type=i.type) for i in reqData.list])

    def wrapperFini(self) -> int:
        marker = self.config.get("fini_marker")
        if marker:
            with open(marker, "a") as f:
                f.write(f"fini {os.getpid()}\n")
        return 0
