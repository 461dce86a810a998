"""Data type and status constants, as in the original AIGes Python SDK (``aiges.core.types``),
as plain ints taken from the engine's one definition (``aiges.engine.items``).

``Types`` and ``Status`` name the codes (``Types[2] == "image"``, ``Status[2] == "end"``).
"""

from aiges.engine.items import DataStatus, DataType

STRING = DataText = int(DataType.TEXT)
AUDIO = DataAudio = int(DataType.AUDIO)
IMAGE = DataImage = int(DataType.IMAGE)
VIDEO = DataVideo = int(DataType.VIDEO)
DataPer = int(DataType.OTHER)

Types = {DataText: "text", DataAudio: "audio", DataImage: "image", DataVideo: "video"}

DataBegin = int(DataStatus.BEGIN)
DataContinue = int(DataStatus.CONTINUE)
DataEnd = int(DataStatus.END)
DataOnce = int(DataStatus.ONCE)

Status = {DataBegin: "begin", DataContinue: "continue", DataEnd: "end", DataOnce: "once"}

Once = DataOnce

# How aiges.stream.SessionManager runs its per-session workers: threads (the only mode the
# original ever made work) or processes.
THREAD_MODE = "thread"
PROCESS_MODE = "process"

__all__ = [
    "STRING",
    "AUDIO",
    "IMAGE",
    "VIDEO",
    "DataText",
    "DataAudio",
    "DataImage",
    "DataVideo",
    "DataPer",
    "Types",
    "DataBegin",
    "DataContinue",
    "DataEnd",
    "DataOnce",
    "Once",
    "Status",
    "THREAD_MODE",
    "PROCESS_MODE",
]
