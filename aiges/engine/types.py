"""The engine's own types: what every front translates its wire messages into.

No protobuf crosses this line. ``DataItem`` pickles its payload out of band (pickle protocol 5),
so sending one to a worker process never copies the bytes into the pickle stream.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from enum import IntEnum

# Payloads at least this large travel as separate buffers beside the pickled control message.
OUT_OF_BAND_MIN = 4096


class DataType(IntEnum):
    TEXT = 0
    AUDIO = 1
    IMAGE = 2
    VIDEO = 3
    OTHER = 4


class DataStatus(IntEnum):
    BEGIN = 0
    CONTINUE = 1
    END = 2
    ONCE = 3


@dataclass(slots=True)
class DataItem:
    """One named piece of input or output data."""

    key: str
    data: bytes
    type: int = DataType.TEXT
    status: int = DataStatus.ONCE
    desc: dict[str, str] = field(default_factory=dict)

    def __reduce_ex__(self, protocol):
        data = self.data
        if protocol >= 5 and len(data) >= OUT_OF_BAND_MIN:
            data = pickle.PickleBuffer(data)
        return (DataItem, (self.key, data, self.type, self.status, self.desc))


@dataclass(slots=True)
class Request:
    """A one-shot call, or one write of a session."""

    params: dict[str, str]
    items: list[DataItem]
    tag: str = ""


@dataclass(slots=True)
class WorkerInfo:
    """What a worker reports once its wrapper is initialised."""

    worker_id: int
    pid: int
    gpu: str
    style: str
    service_id: str = ""
    version: str = ""
    capabilities: frozenset[str] = frozenset()
