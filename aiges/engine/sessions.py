"""The server's side of streaming sessions: one per handle, living on one worker, holding what
admission gave it (a licence, the app's session count) until it ends.

A session is a small state machine::

    OPENING --attach--> OPEN --fail--> FAILED
       |                  |               |
       +------------------+---close-------+--> CLOSED

It is OPENING while its first frame runs (output a wrapper pushes meanwhile is already queued),
OPEN once a worker holds it, FAILED when its output or its worker failed (its next read or write
raises the error, then it closes), CLOSED when it ended for any reason: the batch that ends the
output was read, the client aborted or went away, it sat idle for ``[fc] ttl``, or it failed.
Closing releases its admission ticket, once.

Its output waits in an ``OutputQueue`` within a byte budget (the worker is asked to pause
reading the wrapper's output past it). Handles of recently ended sessions are remembered so a
late call gets 10101 rather than 10008. (The wrapper handle, output encoding and input reordering
live in the worker: ``aiges.worker.session_state``.)
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict, deque
from collections.abc import Iterable

from aiges.engine.admission import Ticket
from aiges.engine.backend import WorkerRef
from aiges.engine.context import Caller, RequestContext
from aiges.engine.items import payload_size
from aiges.engine.messages import ItemsOutput, Output
from aiges.errors import AigesError, ErrorCode

RELEASED_RING = 1000


def same_caller(opener: Caller, caller: Caller) -> bool:
    return opener.app_id == caller.app_id and opener.identity == caller.identity


class SessionState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


class Flow(enum.Enum):
    """What the output queue asks of the engine after a change."""

    KEEP = "keep"
    PAUSE = "pause"
    """Past the budget: ask the worker to stop reading the wrapper's output."""
    RESUME = "resume"
    """Back under half the budget: the worker may read again."""
    OVERFLOW = "overflow"
    """Past the hard limit (output pushed by wrapper threads cannot be paused): end the session."""


def output_size(output: Output) -> int:
    if isinstance(output, ItemsOutput):
        return sum(payload_size(item.data) for item in output.items)
    return len(output)


class OutputQueue:
    """A session's output batches waiting for its reader, with their size and the pause state."""

    __slots__ = ("_batches", "budget", "limit", "paused", "pending_bytes")

    def __init__(self, budget: int, limit: int) -> None:
        self._batches: deque[tuple[Output, bool]] = deque()
        self.budget = budget
        self.limit = limit
        self.pending_bytes = 0
        self.paused = False

    def __bool__(self) -> bool:
        return bool(self._batches)

    def push(self, output: Output, ended: bool) -> Flow:
        self._batches.append((output, ended))
        self.pending_bytes += output_size(output)
        if self.pending_bytes > self.limit:
            return Flow.OVERFLOW
        if self.pending_bytes > self.budget and not self.paused:
            self.paused = True
            return Flow.PAUSE
        return Flow.KEEP

    def push_front(self, batches: Iterable[tuple[Output, bool]]) -> None:
        """Batches that precede those queued (a first frame's own outputs)."""
        ordered = list(batches)
        self._batches.extendleft(reversed(ordered))
        self.pending_bytes += sum(output_size(output) for output, _ in ordered)

    def pop(self) -> tuple[Output, bool, Flow]:
        output, ended = self._batches.popleft()
        self.pending_bytes -= output_size(output)
        if self.paused and not ended and self.pending_bytes <= self.budget // 2:
            self.paused = False
            return output, ended, Flow.RESUME
        return output, ended, Flow.KEEP

    def clear(self) -> None:
        self._batches.clear()
        self.pending_bytes = 0


class Session:
    def __init__(self, context: RequestContext, ticket: Ticket, outputs: OutputQueue) -> None:
        self.context = context
        self.tag = context.tag
        self.ticket = ticket
        self.outputs = outputs
        self.worker: WorkerRef | None = None
        """The worker that holds it, from ``attach`` on."""
        self.service_id = ""
        self.state = SessionState.OPENING
        self.failure: AigesError | None = None
        self.last_active = time.monotonic()
        self.changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Session({self.tag!r}, {self.state.value})"

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def paused(self) -> bool:
        return self.outputs.paused

    @property
    def pending_bytes(self) -> int:
        return self.outputs.pending_bytes

    def belongs_to(self, caller: Caller) -> bool:
        """Whether ``caller`` may use this session: the app (and certificate identity) that opened it."""
        return same_caller(self.context.caller, caller)

    def attach(self, worker: WorkerRef, service_id: str) -> None:
        """Its first frame was answered: the session lives on ``worker``."""
        if self.state not in (SessionState.OPENING, SessionState.FAILED) or self.worker is not None:
            raise RuntimeError(f"session {self.tag} attached while {self.state.value}")
        self.worker = worker
        self.service_id = service_id
        if self.state is SessionState.OPENING:
            self.state = SessionState.OPEN

    def fail(self, error: AigesError) -> None:
        """Its next read or write raises ``error`` (the first failure counts)."""
        if self.state in (SessionState.OPENING, SessionState.OPEN):
            self.failure = error
            self.state = SessionState.FAILED
        self.notify()

    def close(self) -> bool:
        """End it: its ticket is released and its queued output dropped. False if it had ended."""
        if self.state is SessionState.CLOSED:
            return False
        self.state = SessionState.CLOSED
        self.ticket.release()
        self.outputs.clear()
        self.notify()
        return True

    def check_alive(self) -> None:
        """Raise its failure (once it failed, ended since or not) or 10101 (once it ended)."""
        if self.failure is not None:
            raise self.failure
        if self.state is SessionState.CLOSED:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {self.tag} already ended")

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def notify(self) -> None:
        self.changed.set()


class SessionTable:
    """Sessions by handle, opening or open, and a ring of recently released handles."""

    def __init__(self) -> None:
        self.open: dict[str, Session] = {}
        self._released: OrderedDict[str, Caller] = OrderedDict()
        """Recently ended handles, with who had opened each."""

    def __len__(self) -> int:
        return sum(1 for session in self.open.values() if session.state is not SessionState.OPENING)

    def add(self, session: Session) -> None:
        self.open[session.tag] = session

    def find(self, tag: str) -> Session | None:
        return self.open.get(tag)

    def get(self, tag: str, caller: Caller | None = None) -> Session:
        """The session with this handle: 10101 if it has ended; 10008 if there is none, or if
        ``caller`` is not the one who opened it (the answer does not tell the two apart)."""
        session = self.open.get(tag)
        if session is not None:
            if session.state is not SessionState.OPENING and (caller is None or session.belongs_to(caller)):
                return session
        else:
            opener = self._released.get(tag)
            if opener is not None and (caller is None or same_caller(opener, caller)):
                raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {tag} already ended")
        raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag or '(empty handle)'}")

    def remove(self, session: Session) -> None:
        if self.open.get(session.tag) is session:
            del self.open[session.tag]
        self._released[session.tag] = session.context.caller
        while len(self._released) > RELEASED_RING:
            self._released.popitem(last=False)

    def forget(self, session: Session) -> None:
        """An opening session that never opened: gone without a trace."""
        if self.open.get(session.tag) is session:
            del self.open[session.tag]

    def on_worker(self, worker: WorkerRef) -> list[Session]:
        return [s for s in self.open.values() if s.worker is worker]

    def idle(self, ttl_s: float) -> list[Session]:
        cutoff = time.monotonic() - ttl_s
        return [s for s in self.open.values() if s.state is not SessionState.OPENING and s.last_active < cutoff]
