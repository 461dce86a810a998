"""Streaming sessions: one per handle, living on one worker, holding one licence.

A session's input frames are written to its worker in ``seq`` order (out-of-order frames wait up
to ``GAP_WAIT_S`` for the missing ones, then the gap is skipped; frames below the cursor are
dropped), its outputs are queued as batches for readers, and it ends when a batch with status END
is read, when it is aborted, when it sits idle for ``[fc] ttl``, or when its worker dies.
Handles of recently ended sessions are remembered so a late call gets 10101 rather than 10008.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from aiges.engine.types import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode

GAP_WAIT_S = 5.0
RELEASED_RING = 1000


class Sequencer:
    """Puts numbered frames back in order. The first frame's number is the base."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.waiting: dict[int, list[DataItem]] = {}

    def push(self, seq: int, items: list[DataItem]) -> list[list[DataItem]]:
        """The frames now ready to write, in order (possibly none)."""
        if seq < self.next or seq in self.waiting:
            return []
        self.waiting[seq] = items
        return self._drain()

    def skip_gap(self) -> list[list[DataItem]]:
        """Give up on the missing frames: continue from the lowest waiting one."""
        if not self.waiting:
            return []
        self.next = min(self.waiting)
        return self._drain()

    def _drain(self) -> list[list[DataItem]]:
        ready = []
        while self.next in self.waiting:
            ready.append(self.waiting.pop(self.next))
            self.next += 1
        return ready


def ends_output(items: list[DataItem]) -> bool:
    return bool(items) and items[-1].status in (DataStatus.END, DataStatus.ONCE)


@dataclass(eq=False)
class Session:
    tag: str
    worker: Any
    generation: int
    params: dict[str, str]
    plugin_handle: str = ""
    front: Any = None
    sequencer: Sequencer | None = None
    outputs: deque[list[DataItem]] = field(default_factory=deque)
    failure: AigesError | None = None
    output_ended: bool = False
    closed: bool = False
    holds_licence: bool = True
    last_active: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    gap_timer: asyncio.TimerHandle | None = None
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def notify(self) -> None:
        self.changed.set()


class SessionTable:
    """Open sessions by handle, and a ring of recently released handles."""

    def __init__(self) -> None:
        self.open: dict[str, Session] = {}
        self._released: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.open)

    def add(self, session: Session) -> None:
        self.open[session.tag] = session

    def get(self, tag: str) -> Session:
        session = self.open.get(tag)
        if session is not None:
            return session
        if tag in self._released:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {tag} already ended")
        raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag or '(empty handle)'}")

    def exists(self, tag: str) -> bool:
        return tag in self.open or tag in self._released

    def remove(self, session: Session) -> None:
        self.open.pop(session.tag, None)
        self._released[session.tag] = None
        while len(self._released) > RELEASED_RING:
            self._released.popitem(last=False)

    def on_worker(self, worker: Any, generation: int) -> list[Session]:
        return [s for s in self.open.values() if s.worker is worker and s.generation == generation]

    def idle(self, ttl_s: float) -> list[Session]:
        cutoff = time.monotonic() - ttl_s
        return [s for s in self.open.values() if s.last_active < cutoff]
