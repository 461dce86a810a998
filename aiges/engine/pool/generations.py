"""The pool's generations of slots, and the reload that replaces one with the next.

A reload starts a new generation of slots (INCOMING), one per index, with settings read afresh.
Each new worker takes the new calls and sessions of its index as soon as it is ready, in place of
the old one, which keeps serving the sessions it holds; once every new worker is ready the new
slots serve (SERVING) and the old generation retires (RETIRING): its workers finish their calls
and sessions (within the drain timeout), run wrapperFini and stop. If a new worker fails to
start, the reload is abandoned: the old generation takes every new call again and the new
workers that did start retire the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from aiges.engine.messages import WorkerSettings
from aiges.engine.pool.records import PoolSettings, ReloadOutcome
from aiges.engine.pool.slots import SlotRole, WorkerSlot
from aiges.engine.pool.starter import Starter
from aiges.engine.pool.worker import Worker, WorkerState
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.pool")

FINI_WAIT_S = 10.0
"""How long a retiring worker has to run wrapperFini and exit before it is killed."""


class Generations:
    def __init__(
        self,
        settings: PoolSettings,
        starter: Starter,
        changed: Callable[[], None],
        stopping: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.settings = settings
        self._starter = starter
        self._changed = changed
        self._stopping = stopping
        self._spawn = spawn
        self.serving = [WorkerSlot(i, gpu, settings.worker) for i, gpu in enumerate(settings.gpus)]
        self.incoming: list[WorkerSlot] = []
        """A running reload's new generation."""
        self.retiring: list[WorkerSlot] = []
        """Replaced or abandoned slots whose workers are finishing."""
        self.number = 1
        """The serving generation's number."""
        self.last_reload: ReloadOutcome | None = None
        self._reloading = False

    @property
    def reloading(self) -> bool:
        return self._reloading

    def workers(self) -> list[Worker]:
        """Every worker: a reload's new ones, the serving ones, the retiring ones."""
        slots = (*self.incoming, *self.serving, *self.retiring)
        return [slot.worker for slot in slots if slot.worker is not None]

    def takers(self) -> list[Worker]:
        """The workers that take new calls and sessions."""
        return [w for w in self.workers() if w.slot.takes_new_calls()]

    def holders(self) -> list[Worker]:
        """The ready workers that keep the loaded resources: all but the retiring ones."""
        return [w for w in self.workers() if w.ready and w.slot.role is not SlotRole.RETIRING]

    def active(self) -> list[WorkerSlot]:
        """Per index, the slot that takes its new calls."""
        return [slot.active() for slot in self.serving]

    async def reload(self, settings: WorkerSettings, drain_timeout_s: float) -> ReloadOutcome:
        """Start a new generation of workers with ``settings``; each takes its index's new calls
        once ready; when all are, the old generation retires (its workers finish their calls
        and sessions within ``drain_timeout_s``, then stop). A new worker that fails to start
        abandons the reload: the old generation serves on, and the outcome says why."""
        if self._reloading:
            raise AigesError(ErrorCode.WRAPPER_INIT, "a reload is already running")
        self._reloading = True
        started_at = time.monotonic()
        generation = self.number + 1
        incoming = [
            WorkerSlot(
                slot.index, slot.gpu, settings, generation=generation, role=SlotRole.INCOMING, restarts=slot.restarts
            )
            for slot in self.serving
        ]
        self.incoming = incoming
        for old, new in zip(self.serving, incoming, strict=True):
            old.replacement = new
        log.info("reload", generation=generation, workers=len(incoming), wrapper=settings.wrapper)
        try:
            error = await self._starter.start_generation(incoming)
        finally:
            self._reloading = False
        ms = int((time.monotonic() - started_at) * 1000)
        for old in self.serving:
            old.replacement = None
        if error is not None:
            self.incoming = []
            self.retire(incoming, drain_timeout_s)
            outcome = ReloadOutcome(False, self.number, len(self.serving), ms, error)
            log.error("reload failed", generation=generation, error=error, ms=ms)
        else:
            old_slots = self.serving
            for new in incoming:
                new.promote()
            self.serving, self.incoming = incoming, []
            self.number = generation
            self.settings.worker = settings
            self.retire(old_slots, drain_timeout_s)
            outcome = ReloadOutcome(True, generation, len(incoming), ms, retiring=len(old_slots))
            log.info("reloaded", generation=generation, workers=len(incoming), ms=ms, retiring=len(old_slots))
        self.last_reload = outcome
        return outcome

    def retire(self, slots: list[WorkerSlot], timeout_s: float) -> None:
        for slot in slots:
            slot.retire()
        self.retiring.extend(slots)
        self._changed()
        self._spawn(self._wind_down(slots, timeout_s))

    async def _wind_down(self, slots: list[WorkerSlot], timeout_s: float) -> None:
        """Let retiring workers finish their calls and sessions (at most ``timeout_s``), then
        ask each to run wrapperFini and exit (killed if it does not within ``FINI_WAIT_S``)."""
        deadline = time.monotonic() + timeout_s
        workers = [slot.worker for slot in slots if slot.worker is not None]

        def busy(worker: Worker) -> bool:
            return worker.ready and bool(worker.calls or worker.sessions)

        while any(busy(w) for w in workers) and time.monotonic() < deadline and not self._stopping():
            await asyncio.sleep(0.05)
        if self._stopping():
            return
        for worker in workers:
            if busy(worker):
                log.warning(
                    "old worker still busy after the drain timeout",
                    worker=worker.index,
                    sessions=worker.sessions,
                    calls=len(worker.calls),
                )
            if worker.ready and not worker.channel.closed:
                worker.ask_to_exit()
            elif worker.state is not WorkerState.DEAD:
                worker.kill("its generation was replaced by a reload")
        processes = [w.process for w in workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), FINI_WAIT_S)
        except asyncio.TimeoutError:
            for worker in workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.kill(f"it did not stop within {FINI_WAIT_S:.0f} s of wrapperFini")
        for slot in slots:
            if slot in self.retiring:
                self.retiring.remove(slot)
        self._changed()
