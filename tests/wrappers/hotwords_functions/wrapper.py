"""The hot-word recogniser in the function style (shim v1 ABI): a resource is lines ``heard=word``
loaded with ``wrapperLoadRes(reqData, resId)``; calls and sessions get the ids they name as
``psrIds`` (all of them apply, in order) and their count as ``psrCnt``."""

from typing import Any

lists: dict[int, dict[str, str]] = {}
sessions: dict[str, dict[str, Any]] = {}


def wrapperInit(config):
    return 0


def wrapperError(ret):
    return {31: "this hot-word list is refused"}.get(ret, "unknown")


def wrapperLoadRes(reqData, resId):
    data = reqData[0]["data"]
    if data == b"refuse":
        return 31
    lists[resId] = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
    return 0


def wrapperUnloadRes(resId):
    lists.pop(resId, None)
    return 0


def transcribe(text, psrIds, psrCnt):
    assert len(psrIds) == psrCnt
    for res_id in psrIds:
        for heard, word in lists[res_id].items():
            text = text.replace(heard, word)
    return text.encode()


def wrapperOnceExec(usrTag, params, reqData, respData, psrIds, psrCnt):
    text = transcribe(reqData[0]["data"].decode(), psrIds, psrCnt)
    respData.append({"key": "transcript", "data": text, "len": len(text), "status": 3, "type": 0})
    return 0


def wrapperCreate(usrTag, params, psrIds, psrCnt):
    sessions[usrTag] = {"ids": psrIds, "heard": []}
    return usrTag


def wrapperWrite(handle, reqData):
    sessions[handle]["heard"].extend(item["data"].decode() for item in reqData)
    sessions[handle]["end"] = any(item["status"] == 2 for item in reqData)
    return 0


def wrapperRead(handle, respData):
    session = sessions[handle]
    if session.get("end"):
        session["end"] = False
        text = transcribe(" ".join(session["heard"]), session["ids"], len(session["ids"]))
        respData.append({"key": "transcript", "data": text, "len": len(text), "status": 2, "type": 0})
    return 0


def wrapperDestroy(handle):
    sessions.pop(handle, None)
    return 0


def wrapperFini():
    return 0
