"""A worker's calls: each call in flight (``PendingCall``), the ordered queue of a worker's calls
(``CallQueue``), and the running estimate of its service time (``ServiceTime``).

A worker runs its calls one at a time in the order it got them, so of the calls sent to it the
first is the one executing and the others wait in its socket. While it owes answers, new calls
are held here, not sent (see ``Worker.submit``): a held call has not reached the worker and can
still be taken back (``CallQueue.withdraw``); one already sent cannot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from aiges.engine.messages import Call, Destroy, Finish, LoadResource, Once, Open, Pause, Resume, UnloadResource, Write

if TYPE_CHECKING:
    from aiges.engine.pool.worker import Worker

CALL_KINDS: dict[type, str] = {
    Once: "once",
    Open: "open",
    Write: "write",
    Finish: "finish",
    Destroy: "destroy",
    LoadResource: "load",
    UnloadResource: "unload",
}
"""The ``kind`` label of a call's leg latencies."""

SERVED_CALLS = frozenset({Once, Open, Write, Finish, Destroy})
"""The calls a client's request makes: their exec times make a worker's service time (the rare,
slow resource loads would only blur it)."""

Notice: TypeAlias = "Pause | Resume"
"""A one-way message to a worker: it keeps its place among held calls."""


@dataclass(slots=True, eq=False)
class PendingCall:
    future: asyncio.Future[Any]
    message: Call
    created_at: float
    retryable: bool
    """A one-shot or a first frame: moved to another worker if its own dies before starting it."""
    sent_at: float = 0.0
    """When it was handed to its worker's channel (0 while held)."""
    worker: Worker | None = None
    """The worker that answered it."""
    started: bool = False
    """Its worker said it started (``Started``, for calls run as one batch)."""
    priority: int = 0
    """A first frame's priority: higher is sent first."""
    deadline: float = 0.0
    """A first frame's deadline (``time.monotonic()``; 0: none): dropped if it passes while waiting."""
    waiting: bool = False
    """In the server's queue of first frames (``waiting.WaitingCalls``), not given to a worker yet."""


class CallQueue:
    """One worker's calls in order: those sent (the head is executing), then those held."""

    __slots__ = ("_held", "_held_calls", "_sent", "_unstarted")

    def __init__(self) -> None:
        self._sent: dict[int, PendingCall] = {}
        self._held: deque[PendingCall | Notice] = deque()
        self._held_calls = 0
        self._unstarted = 0
        """Sent calls not marked started (the head among them, if it is not)."""

    def __len__(self) -> int:
        return len(self._sent) + self._held_calls

    def __bool__(self) -> bool:
        return bool(self._sent) or self._held_calls > 0

    @property
    def in_flight(self) -> int:
        """Calls sent and not answered."""
        return len(self._sent)

    @property
    def held(self) -> int:
        """Calls queued and not sent."""
        return self._held_calls

    @property
    def holding(self) -> bool:
        """Something (a call or a notice) waits to be sent."""
        return bool(self._held)

    @property
    def queued(self) -> int:
        """Calls that have not started: the held ones and the sent ones behind the head (the head
        is running, unless it is marked started already and counted out that way)."""
        head = self.head
        running = 1 if head is not None and not head.started else 0
        return self._held_calls + self._unstarted - running

    @property
    def head(self) -> PendingCall | None:
        """The call the worker is executing (the first sent and not answered)."""
        for call in self._sent.values():
            return call
        return None

    def sent(self, call: PendingCall) -> None:
        self._sent[call.message.call_id] = call
        if not call.started:
            self._unstarted += 1

    def hold(self, entry: PendingCall | Notice) -> None:
        self._held.append(entry)
        if isinstance(entry, PendingCall):
            self._held_calls += 1

    def release(self) -> list[PendingCall | Notice]:
        """Every held entry, in order, each held call now counted as sent."""
        entries = list(self._held)
        self._held.clear()
        self._held_calls = 0
        for entry in entries:
            if isinstance(entry, PendingCall):
                self.sent(entry)
        return entries

    def answered(self, call_id: int) -> PendingCall | None:
        """The sent call with this id, taken out (None if it is not here: timed out, or unknown)."""
        call = self._sent.pop(call_id, None)
        if call is not None and not call.started:
            self._unstarted -= 1
        return call

    def mark_started(self, call_ids: list[int]) -> None:
        for call_id in call_ids:
            call = self._sent.get(call_id)
            if call is not None and not call.started:
                call.started = True
                self._unstarted -= 1

    def withdraw(self, call: PendingCall) -> bool:
        """Take back a held call (it never reaches the worker); False if it was sent, or is not here."""
        for position, entry in enumerate(self._held):
            if entry is call:
                del self._held[position]
                self._held_calls -= 1
                return True
        return False

    def find_sent(self, call_id: int) -> PendingCall | None:
        return self._sent.get(call_id)

    def find_held(self, call_id: int) -> PendingCall | None:
        for entry in self._held:
            if isinstance(entry, PendingCall) and entry.message.call_id == call_id:
                return entry
        return None

    def expire_head(self) -> list[PendingCall]:
        """The head and every call marked started with it (they ran together), taken out."""
        head = self.head
        if head is None:
            return []
        ids = [head.message.call_id] + [i for i, c in self._sent.items() if c.started and c is not head]
        expired = []
        for call_id in ids:
            call = self.answered(call_id)
            if call is not None:
                expired.append(call)
        return expired

    def drain(self) -> list[PendingCall]:
        """Every call, sent first and then held, in order; the queue is left empty."""
        calls = list(self._sent.values())
        calls.extend(entry for entry in self._held if isinstance(entry, PendingCall))
        self._sent.clear()
        self._held.clear()
        self._held_calls = self._unstarted = 0
        return calls


class ServiceTime:
    """A running estimate of how long one call holds a worker: the exponentially weighted mean of
    the time from when it started (sent to the idle worker, or the previous answer came) to its
    answer, as the server sees it (the wrapper's run, the worker's decoding and encoding, the
    IPC), each new one weighing ``alpha``. None until the first answer."""

    __slots__ = ("alpha", "samples", "seconds")

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.seconds: float | None = None
        self.samples = 0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.samples += 1
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.seconds += self.alpha * (seconds - self.seconds)
