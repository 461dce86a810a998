"""Where calls go. First frames (one-shot calls and sessions' first frames) wait in the server
(``waiting.WaitingCalls``: highest priority first, then oldest) until a worker that takes new calls
has room (a few milliseconds of work sent to it, ``PIPELINE_S``); then the one with the least
work gets the next. A waiting call that could no longer be done before its deadline is dropped
(10102) before any wrapper sees it, one whose caller goes away is taken back (``withdraw``), and
while no worker is ready a call waits at most ``wait_ms`` (10909). A dead worker's calls: the
retryable ones it never started wait again, first, the others fail.

``estimate`` is what admission asks: how long a new call of a priority would wait before a worker
starts it, and how long it would then run, from the work each worker has and its running
service-time estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiges.engine.backend import Estimate
from aiges.engine.pool.calls import PendingCall
from aiges.engine.pool.waiting import WaitingCalls
from aiges.engine.pool.worker import Worker, lost_call_error
from aiges.errors import AigesError, ErrorCode, Overloaded

PIPELINE_S = 0.002
"""Work sent ahead to a worker, by its service time, so that it never waits for its next call;
what waits beyond it waits in the server, where it can be reordered, withdrawn or dropped."""
MAX_DEPTH = 64
"""At most this many calls sent ahead to a worker, however short its calls."""


class Dispatcher:
    def __init__(self, wait_ms: int, spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self.wait_ms = wait_ms
        """How long a call waits for a worker to become ready."""
        self._spawn = spawn
        self._takers: list[Worker] = []
        self.waiting = WaitingCalls()
        self._no_worker_since: float | None = None

    @property
    def takers(self) -> list[Worker]:
        """The workers that take new calls and sessions (ready or not)."""
        return self._takers

    def refresh(self, takers: list[Worker]) -> None:
        """The workers that take new calls, after a change of state or of generation."""
        self._takers = takers
        if any(w.ready for w in takers):
            self._no_worker_since = None
            self.pump()
        elif self._no_worker_since is None:
            self._no_worker_since = time.monotonic()

    # -- first frames --------------------------------------------------------------------------------

    def enqueue(self, call: PendingCall, first: bool = False) -> None:
        self.waiting.push(call, first)
        self.pump()

    def pump(self) -> None:
        """Give waiting calls to workers with room, most urgent first, each to the worker with
        the least work; drop those whose deadline has passed."""
        waiting = self.waiting
        if not waiting:
            return
        now = time.monotonic()
        while waiting:
            worker = self._roomiest(now)
            if worker is None:
                return
            call = waiting.pop()
            if call is None:
                return
            if call.future.done():  # its caller is gone
                continue
            if call.deadline and now + (worker.service_time.seconds or 0.0) >= call.deadline:
                self._expired(call, now)
                continue
            if not worker.dispatch(call):
                waiting.push(call, first=True)
                return

    def _roomiest(self, now: float) -> Worker | None:
        best: Worker | None = None
        best_backlog = 0.0
        for worker in self._takers:
            if not worker.has_room(PIPELINE_S, MAX_DEPTH):
                continue
            backlog = worker.backlog(now, worker.service_time.seconds or 0.0)
            if best is None or backlog < best_backlog or (backlog == best_backlog and worker.load < best.load):
                best, best_backlog = worker, backlog
        return best

    def withdraw(self, call_id: int) -> bool:
        """Take back a waiting first frame nobody waits for: its future is cancelled."""
        call = self.waiting.find(call_id)
        if call is None or not self.waiting.take(call):
            return False
        call.future.cancel()
        return True

    def evict_below(self, priority: int) -> int | None:
        """Refuse the waiting call that would be sent last, if its priority is below ``priority``
        (a more urgent call takes its place): 10110 with a retry hint. Its call id, or None."""
        call = self.waiting.lowest_below(priority)
        if call is None or not self.waiting.take(call):
            return None
        estimate = self.estimate(call.priority)
        hint = estimate.wait_s + estimate.service_s if estimate is not None else 1.0
        if not call.future.done():
            call.future.set_exception(
                Overloaded(f"a call of higher priority took its place (priority {call.priority})", hint)
            )
        return call.message.call_id

    def expire(self, now: float) -> None:
        """Drop waiting calls whose deadline passed; fail them all once no worker has been
        ready for ``wait_ms``."""
        stranded = self._no_worker_since is not None and now - self._no_worker_since > self.wait_ms / 1000
        for call in list(self.waiting):
            if call.deadline and now >= call.deadline:
                self.waiting.take(call)
                self._expired(call, now)
            elif stranded:
                self.waiting.take(call)
                if not call.future.done():
                    call.future.set_exception(
                        AigesError(ErrorCode.WRAPPER_EXEC, f"no worker became ready within {self.wait_ms} ms")
                    )

    @staticmethod
    def _expired(call: PendingCall, now: float) -> None:
        """A waiting call that can no longer be done before its deadline: it never runs (10102)."""
        if not call.future.done():
            waited = int((now - call.created_at) * 1000)
            call.future.set_exception(
                AigesError(
                    ErrorCode.ONCE_TIMEOUT, f"it could no longer be done before its deadline after {waited} ms waiting"
                )
            )

    def estimate(self, priority: int) -> Estimate | None:
        """How long a new call of ``priority`` would wait and then run; None while no ready
        worker has answered a call yet (nothing to go by)."""
        now = time.monotonic()
        ready = [w for w in self._takers if w.ready]
        known = [w.service_time.seconds for w in ready if w.service_time.seconds is not None]
        if not known:
            return None
        service = sum(known) / len(known)
        backlogs = [w.backlog(now, w.service_time.seconds or service) for w in ready]
        ahead = self.waiting.ahead_of(priority)
        wait = min(backlogs) if ahead == 0 else (sum(backlogs) + ahead * service) / len(ready)
        return Estimate(wait, service)

    # -- a dead worker's calls -----------------------------------------------------------------------

    def take_over(self, lost: Worker, reason: str) -> int:
        """A dead worker's calls: those it may have run fail (10909 for a one-shot or a first
        frame, else 10109); retryable ones it never started wait again, first. How many it had."""
        ran, unstarted = lost.lose_calls()
        for call in ran:
            if not call.future.done():
                call.future.set_exception(lost_call_error(call, lost.index, reason))
        for call in reversed(unstarted):
            if call.future.done():
                continue
            if call.retryable:
                call.sent_at = 0.0
                self.waiting.push(call, first=True)
            else:
                call.future.set_exception(lost_call_error(call, lost.index, reason))
        self.pump()
        return len(ran) + len(unstarted)
