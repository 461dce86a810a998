"""First frames (one-shot calls and sessions' first frames) waiting for a worker, in the server.

A first frame is not sent to a worker as it arrives: it waits here, highest priority first and
then oldest, until a worker has room for it (``Worker.has_room``: little enough work already sent
to it that the next call would start within a few milliseconds). So the calls that wait, wait
where they can still be reordered, taken back when their caller goes away, and dropped when their
deadline passes, before any of them reaches a wrapper.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from aiges.engine.pool.calls import PendingCall


class WaitingCalls:
    __slots__ = ("_count", "_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, PendingCall]] = []
        self._order = itertools.count()
        self._count = 0
        """Calls in the heap that are still waiting (taken ones are left in it, marked, until popped)."""

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[PendingCall]:
        return (call for _, _, call in self._heap if call.waiting)

    def push(self, call: PendingCall, first: bool = False) -> None:
        """``first``: ahead of the calls of its priority (one moved from a dead worker)."""
        order = -next(self._order) if first else next(self._order)
        call.waiting = True
        heapq.heappush(self._heap, (-call.priority, order, call))
        self._count += 1

    def pop(self) -> PendingCall | None:
        """The call to send next (highest priority, oldest), taken out."""
        heap = self._heap
        while heap:
            call = heapq.heappop(heap)[2]
            if call.waiting:
                call.waiting = False
                self._count -= 1
                return call
        return None

    def take(self, call: PendingCall) -> bool:
        """Take a call out wherever it is; False if it is not waiting."""
        if not call.waiting:
            return False
        call.waiting = False
        self._count -= 1
        if self._count == 0:
            self._heap.clear()
        return True

    def find(self, call_id: int) -> PendingCall | None:
        return next((call for call in self if call.message.call_id == call_id), None)

    def ahead_of(self, priority: int) -> int:
        """Calls that would be sent before a new call of this priority."""
        return sum(1 for call in self if call.priority >= priority)

    def lowest_below(self, priority: int) -> PendingCall | None:
        """The waiting call that would be sent last, if its priority is below ``priority``."""
        last: PendingCall | None = None
        for call in self:
            if call.priority < priority and (
                last is None
                or call.priority < last.priority
                or (call.priority == last.priority and call.created_at > last.created_at)
            ):
                last = call
        return last
