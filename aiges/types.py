"""Data type and status constants, as in the original AIGes Python SDK (``aiges.types``)."""

STRING = 0
AUDIO = 1
IMAGE = 2
VIDEO = 3

DataText = 0
DataAudio = 1
DataImage = 2
DataVideo = 3
DataPer = 4

DataBegin = 0
DataContinue = 1
DataEnd = 2
DataOnce = 3

Once = DataOnce

THREAD_MODE = "thread"
PROCESS_MODE = "process"

__all__ = [
    "STRING", "AUDIO", "IMAGE", "VIDEO",
    "DataText", "DataAudio", "DataImage", "DataVideo", "DataPer",
    "DataBegin", "DataContinue", "DataEnd", "DataOnce", "Once",
    "THREAD_MODE", "PROCESS_MODE",
]
