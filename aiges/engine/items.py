"""The types the codecs produce and the plugin adapters consume, inside the worker processes."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias

Payload: TypeAlias = "bytes | memoryview | pickle.PickleBuffer"
"""A payload as it travels: bytes; a memoryview of the buffer it arrived in (a slice of a client's
request, of the shared-memory ring, of a memfd); a ``PickleBuffer`` while it is marked to travel
out of band. Code that must keep it past its call, or hand it to a wrapper, copies it to bytes
once (``aiges.engine.shm.copy_out``)."""


def payload_size(data: Payload) -> int:
    """A payload's length in bytes."""
    if type(data) is bytes:
        return len(data)
    with memoryview(data) as view:
        return view.nbytes


class DataType(IntEnum):
    TEXT = 0
    AUDIO = 1
    IMAGE = 2
    VIDEO = 3
    OTHER = 4


TYPE_CODES: dict[str, int] = {t.name.lower(): int(t) for t in DataType}
"""Data type names as the ASE JSON API, schemas and config files write them -> codes."""
TYPE_NAMES: dict[int, str] = {code: name for name, code in TYPE_CODES.items()}


class DataStatus(IntEnum):
    BEGIN = 0
    CONTINUE = 1
    END = 2
    ONCE = 3


@dataclass(slots=True)
class DataItem:
    """One named piece of input or output data."""

    key: str
    data: Payload
    type: int = DataType.TEXT
    status: int = DataStatus.ONCE
    desc: dict[str, str] = field(default_factory=dict)


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
    schema: dict[str, Any] | None = None
