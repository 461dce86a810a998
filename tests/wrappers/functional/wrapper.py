"""A function-style wrapper (the original v1 shim's ABI)."""

import os
from typing import Any

config_seen: dict[str, str] = {}


def wrapperInit(config):
    config_seen.update(config)
    return 0


def wrapperError(ret):
    return {13: "thirteen is unlucky"}.get(ret, "unknown")


def wrapperOnceExec(usrTag, params, reqData, respData, psrIds, psrCnt):
    if params.get("mode") == "error":
        return 13
    if params.get("mode") == "wait_cancel":  # until the caller goes: aiges.sdk.call_context()
        import time

        from aiges.sdk import call_context

        until = time.monotonic() + 30
        while not call_context().cancelled and time.monotonic() < until:
            time.sleep(0.01)
        with open(params["note"], "a") as note:
            note.write(f"cancelled={call_context().cancelled}\n")
        return 13
    for item in reqData:
        data = item["data"]
        if params.get("mode") == "upper":
            data = data.upper()
        respData.append({"key": item["key"], "data": data, "len": len(data), "status": 3, "type": item["type"]})
    if params.get("mode") == "str":
        respData.append({"key": "extra", "data": "a string", "len": 8, "status": 3, "type": 0})
    if params.get("mode") == "missing":
        respData.append({"key": "extra", "data": b"x"})
    return 0


def wrapperCreate(usrTag, params, psrIds, psrCnt):
    sessions[usrTag] = []
    return usrTag


def wrapperWrite(handle, reqData):
    sessions[handle].extend(reqData)
    return 0


def wrapperRead(handle, respData):
    for item in sessions[handle]:
        respData.append(
            {
                "key": item["key"],
                "data": item["data"][::-1],
                "len": len(item["data"]),
                "status": item["status"],
                "type": item["type"],
            }
        )
    sessions[handle].clear()
    return 0


def wrapperDestory(handle):
    sessions.pop(handle, None)
    return 0


def wrapperFini():
    return 0


sessions: dict[str, list[Any]] = {}
PID = os.getpid()
