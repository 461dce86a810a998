"""A "speech recogniser" whose transcript depends on a personalised resource: a hot-word list.

The input "audio" is text; the transcript is that text with each heard form a loaded hot-word
list names replaced by its word. A hot-word list (AILoad) is lines ``heard=word``; a call or a
session that names it (``aiges.res_ids``) gets it as ``persId``. The data b"refuse" is refused
(error 31). Every answer also says which worker process made it and the [wrapper] "mark" it
was started with (``<mark>@<pid>`` in the output "who"); [wrapper] delay_ms slows every call.
[wrapper] fail_init makes wrapperInit fail.
"""

import os
import time

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase
from aiges.types import DataEnd, DataOnce


class Wrapper(WrapperBase):
    serviceId = "hotwords"
    version = "v1"

    def wrapperInit(self, config: dict) -> int:
        if config.get("fail_init"):
            return 40
        self.mark = config.get("mark", "")
        self.delay = int(config.get("delay_ms", "0")) / 1000
        self.lists: dict[int, dict[str, str]] = {}
        self.sessions: dict[str, dict] = {}
        return 0

    def wrapperError(self, ret: int) -> str:
        return {31: "this hot-word list is refused", 40: "the model is missing"}.get(ret, "")

    def wrapperLoadRes(self, reqData: DataListCls, resId: int) -> int:
        first = reqData.list[0]
        if first.data == b"refuse":
            return 31
        assert first.desc["patch_id"] == str(resId)
        pairs = (line.split("=", 1) for line in first.data.decode().splitlines() if "=" in line)
        self.lists[resId] = {heard.strip(): word.strip() for heard, word in pairs}
        return 0

    def wrapperUnloadRes(self, resId: int) -> int:
        self.lists.pop(resId, None)
        return 0

    def _transcribe(self, text: str, pers_id: int) -> str:
        for heard, word in self.lists.get(pers_id, {}).items():
            text = text.replace(heard, word)
        return text

    def _answer(self, transcript: str, status: int) -> Response:
        who = f"{self.mark}@{os.getpid()}".encode()
        return Response(
            [
                ResponseData(key="transcript", data=transcript.encode(), status=status),
                ResponseData(key="who", data=who, status=status),
            ]
        )

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        if self.delay:
            time.sleep(self.delay)
        audio = reqData.get("audio")
        assert audio is not None, "every call of this wrapper carries audio"
        return self._answer(self._transcribe(audio.data.decode(), persId), DataOnce)

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        self.sessions[usrTag] = {"pers": persId, "heard": [], "done": False}
        return SessionCreateResponse(handle=usrTag)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        session = self.sessions[handle]
        for item in reqData.list:
            session["heard"].append(item.data.decode())
            session["done"] = session["done"] or item.status == DataEnd
        return 0

    def wrapperRead(self, handle: str) -> Response:
        session = self.sessions[handle]
        if not session["done"]:
            return Response([])
        session["done"] = False
        return self._answer(self._transcribe(" ".join(session["heard"]), session["pers"]), DataEnd)

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle, None)
        return 0

    def wrapperFini(self) -> int:
        return 0
