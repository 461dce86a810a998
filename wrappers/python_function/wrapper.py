"""Template: a function-style wrapper (the original AIGes v1 Python ABI).

aiges serve --wrapper wrappers/python_function
"""


def wrapperInit(config: dict) -> int:
    """`config` is the [wrapper] section, every value a string. Return 0 on success."""
    return 0


def wrapperOnceExec(usrTag: str, params: dict, reqData: tuple, respData: list, psrIds: tuple, psrCnt: int) -> int:
    """`reqData` holds dicts {key, data, len, status, type, desc}. Append result dicts to `respData`."""
    for item in reqData:
        data = item["data"]
        respData.append({"key": item["key"], "data": data, "len": len(data), "status": 3, "type": item["type"]})
    return 0


def wrapperError(ret: int) -> str:
    return f"error {ret}"


def wrapperFini() -> int:
    return 0
