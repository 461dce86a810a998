"""Personalised resources: what ``AILoad`` loaded, kept by the server for every worker.

A resource is data a wrapper loads with ``wrapperLoadRes(data, resId)`` (a hot-word list, a
speaker model...) and that calls then name as their person ids (``psrIds`` / ``persId``). The
server keeps the loaded set, so that a worker that starts later (a restart after a crash, a
reload's new generation) loads every one of them before it takes a call; ``[resources]`` bounds
how many and how many bytes.

Resource ids are unsigned 32-bit integers from 1: the C ABI passes ``unsigned int resId`` and
``unsigned int psrIds[]``, the class style ``persId: int`` with 0 meaning "none". A call names
its resources in the request param ``aiges.res_ids`` (``RES_IDS_PARAM``), comma separated: the
wire protocol has no field for them, and params whose name starts with ``aiges.`` are the
server's own (no wrapper declares one; the worker takes it out before the wrapper sees the
params).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiges.engine.items import DataItem, payload_size
from aiges.errors import AigesError, ErrorCode

RES_IDS_PARAM = "aiges.res_ids"
"""The request param naming a call's or a session's resources: ``"7"`` or ``"7,12"``."""
MAX_RES_ID = (1 << 32) - 1
MAX_RES_IDS = 64
"""Most resources one call may name."""


def parse_res_id(text: str, what: str = "resId") -> int:
    """A resource id from its decimal text; 10107 unless it is a whole number 1..2^32-1."""
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_RES_ID:
        raise AigesError(
            ErrorCode.INVALID_PARAM_VALUE, f"{what} must be a whole number from 1 to {MAX_RES_ID}, got {text!r}"
        )
    return int(value)


def parse_res_ids(text: str) -> tuple[int, ...]:
    """The ids an ``aiges.res_ids`` param names, in its order, without repeats."""
    ids: list[int] = []
    for part in text.split(","):
        if part.strip():
            res_id = parse_res_id(part, RES_IDS_PARAM)
            if res_id not in ids:
                ids.append(res_id)
    if len(ids) > MAX_RES_IDS:
        raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"{RES_IDS_PARAM} names {len(ids)} ids; at most {MAX_RES_IDS}")
    return tuple(ids)


@dataclass(frozen=True, slots=True)
class Resource:
    res_id: int
    items: list[DataItem]

    @property
    def size(self) -> int:
        return sum(payload_size(item.data) for item in self.items)


class ResourceStore:
    """The loaded resources, by id, within a count and a byte budget."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.loaded: dict[int, Resource] = {}

    def __len__(self) -> int:
        return len(self.loaded)

    @property
    def size(self) -> int:
        return sum(resource.size for resource in self.loaded.values())

    def get(self, res_id: int) -> Resource | None:
        return self.loaded.get(res_id)

    def check(self, resource: Resource) -> None:
        """10121 if keeping ``resource`` (in place of one with its id) passes a bound."""
        previous = self.loaded.get(resource.res_id)
        count = len(self.loaded) + (previous is None)
        if count > self.max_count:
            raise AigesError(
                ErrorCode.RESOURCE_LIMIT,
                f"{len(self.loaded)} resources are loaded, the most [resources] max_count allows; AIUnLoad one first",
            )
        size = self.size - (previous.size if previous else 0) + resource.size
        if size > self.max_bytes:
            raise AigesError(
                ErrorCode.RESOURCE_LIMIT,
                f"resource {resource.res_id} ({resource.size} bytes) would bring the loaded resources to {size} "
                f"bytes, over [resources] max_mb ({self.max_bytes} bytes)",
            )

    def put(self, resource: Resource) -> None:
        self.loaded[resource.res_id] = resource

    def remove(self, res_id: int) -> Resource:
        resource = self.loaded.pop(res_id, None)
        if resource is None:
            raise unknown(res_id)
        return resource


def unknown(res_id: int) -> AigesError:
    return AigesError(ErrorCode.RESOURCE_UNKNOWN, f"resource {res_id} is not loaded (AILoad it first)")
