"""Where new calls go: the least-loaded ready worker among those that take new calls (waiting,
up to ``exec_timeout_ms``, while all of them restart), and where a dead worker's calls go: the
retryable ones it never started move to another worker, the others fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiges.engine.pool.calls import PendingCall
from aiges.engine.pool.worker import Worker, lost_call_error
from aiges.errors import AigesError, ErrorCode


class Dispatcher:
    def __init__(self, wait_ms: int, spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self.wait_ms = wait_ms
        """How long a call waits for a worker to become ready."""
        self._spawn = spawn
        self._takers: list[Worker] = []
        self._any_ready = asyncio.Event()

    @property
    def takers(self) -> list[Worker]:
        """The workers that take new calls and sessions (ready or not)."""
        return self._takers

    def refresh(self, takers: list[Worker]) -> None:
        """The workers that take new calls, after a change of state or of generation."""
        self._takers = takers
        if any(w.ready for w in takers):
            self._any_ready.set()
        else:
            self._any_ready.clear()

    def least_loaded(self) -> Worker | None:
        best = None
        for worker in self._takers:
            if worker.ready and (best is None or worker.load < best.load):
                best = worker
        return best

    async def pick(self) -> Worker:
        """The least-loaded ready worker; waits for one while all are restarting (10909 after
        ``wait_ms``)."""
        deadline = time.monotonic() + self.wait_ms / 1000
        while True:
            best = self.least_loaded()
            if best is not None:
                return best
            self._any_ready.clear()
            try:
                await asyncio.wait_for(self._any_ready.wait(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise AigesError(ErrorCode.WRAPPER_EXEC, f"no worker became ready within {self.wait_ms} ms") from None

    def submit(self, worker: Worker, call: PendingCall) -> None:
        """Queue a call on ``worker``; if its channel has just closed, a retryable call moves on
        and any other fails."""
        if worker.submit(call):
            return
        if call.retryable:
            self._spawn(self.redispatch(call))
        elif not call.future.done():
            call.future.set_exception(AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} is gone"))

    async def redispatch(self, call: PendingCall) -> None:
        try:
            worker = await self.pick()
        except AigesError as exc:
            if not call.future.done():
                call.future.set_exception(exc)
            return
        self.submit(worker, call)

    def take_over(self, lost: Worker, reason: str) -> int:
        """A dead worker's calls: those it may have run fail (10909 for a one-shot or a first
        frame, else 10109); retryable ones it never started move to another worker. How many it had."""
        ran, unstarted = lost.lose_calls()
        for call in ran:
            if not call.future.done():
                call.future.set_exception(lost_call_error(call, lost.index, reason))
        for call in unstarted:
            if call.future.done():
                continue
            if call.retryable:
                self._spawn(self.redispatch(call))
            else:
                call.future.set_exception(lost_call_error(call, lost.index, reason))
        return len(ran) + len(unstarted)
