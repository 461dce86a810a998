"""The server's side of streaming sessions: one per handle, living on one worker, holding one
licence until it ends.

A session's encoded outputs are queued as batches for readers, and it ends when a batch that ends
the output is read, when it is aborted, when it sits idle for ``[fc] ttl``, or when its worker
dies. Handles of recently ended sessions are remembered so a late call gets 10101 rather than
10008. (The wrapper handle, output encoding and input reordering live in the worker:
``aiges.worker.session_state``.)
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiges.engine.messages import Output
from aiges.errors import AigesError, ErrorCode

if TYPE_CHECKING:
    from aiges.engine.pool import Worker

RELEASED_RING = 1000


@dataclass(eq=False)
class Session:
    tag: str
    worker: Worker
    """The worker process that holds it (a restarted slot has a new one)."""
    service_id: str
    outputs: deque[tuple[Output, bool]] = field(default_factory=deque)
    failure: AigesError | None = None
    closed: bool = False
    holds_licence: bool = True
    pending_bytes: int = 0
    """Bytes of output queued for the client (``outputs``)."""
    paused: bool = False
    """The worker was asked to stop reading the wrapper's output for this session."""
    last_active: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

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

    def remove(self, session: Session) -> None:
        self.open.pop(session.tag, None)
        self._released[session.tag] = None
        while len(self._released) > RELEASED_RING:
            self._released.popitem(last=False)

    def on_worker(self, worker: Worker) -> list[Session]:
        return [s for s in self.open.values() if s.worker is worker]

    def idle(self, ttl_s: float) -> list[Session]:
        cutoff = time.monotonic() - ttl_s
        return [s for s in self.open.values() if s.last_active < cutoff]
