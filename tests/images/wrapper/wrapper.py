"""The image tests' wrapper: calls that take a while (to be in flight during a stop) and calls that
leave an orphan behind (to see PID 1 reap it).

params: ``sleep_ms`` how long the call takes; ``orphan`` = "1": fork a child that forks a grandchild
and exits at once, so the grandchild (already exited or not) is reparented to the container's PID 1,
which alone can reap it. The reply says the grandchild's pid.
"""

import os
import time

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, StringParamField, WrapperBase


class Request:
    sleep_ms = StringParamField(key="sleep_ms", value="0")
    orphan = StringParamField(key="orphan", enums=["0", "1"], value="0")
    text = StringBodyField(key="text", value=b"hi")


class Reply:
    text = StringBodyField(key="text")
    orphan = StringBodyField(key="orphan")


def leave_an_orphan() -> int:
    """Fork a child that forks a grandchild and exits; reap the child. Returns the grandchild's pid."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        grandchild = os.fork()
        if grandchild == 0:
            os._exit(0)
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        grandchild = int(pipe.read())
    os.waitpid(child, 0)
    return grandchild


class Wrapper(WrapperBase):
    serviceId = "imagetest"
    version = "v1"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config: dict) -> int:
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        time.sleep(int(params.get("sleep_ms", "0")) / 1000)
        text = reqData.get("text")
        assert text is not None, "text is the declared input"
        items = [ResponseData(key="text", data=text.data)]
        if params.get("orphan") == "1":
            items.append(ResponseData(key="orphan", data=str(leave_an_orphan())))
        return Response(items)

    def wrapperFini(self) -> int:
        return 0
