"""Data type and status constants, as in the original AIGes Python SDK (``aiges.core.types``).

``Types`` and ``Status`` name the codes (``Types[2] == "image"``, ``Status[2] == "end"``).
"""

STRING = 0
AUDIO = 1
IMAGE = 2
VIDEO = 3

DataText = 0
DataAudio = 1
DataImage = 2
DataVideo = 3
DataPer = 4

Types = {DataText: "text", DataAudio: "audio", DataImage: "image", DataVideo: "video"}

DataBegin = 0
DataContinue = 1
DataEnd = 2
DataOnce = 3

Status = {DataBegin: "begin", DataContinue: "continue", DataEnd: "end", DataOnce: "once"}

Once = DataOnce

# How aiges.stream.SessionManager runs its per-session workers: threads (the only mode the
# original ever made work) or processes.
THREAD_MODE = "thread"
PROCESS_MODE = "process"

__all__ = [
    "STRING", "AUDIO", "IMAGE", "VIDEO",
    "DataText", "DataAudio", "DataImage", "DataVideo", "DataPer", "Types",
    "DataBegin", "DataContinue", "DataEnd", "DataOnce", "Once", "Status",
    "THREAD_MODE", "PROCESS_MODE",
]
