"""``WorkerPool``: the engine's ``Backend`` (``aiges.engine.backend``), made of the parts of this
package: the workers (``worker``), who starts and restarts them (``starter``), where calls go
(``dispatch``), the generations a reload replaces (``generations``) and the kept resources
(``replicator``). Here they are wired together, a worker's death is handled (its calls failed
or moved, the engine told, its slot restarted) and the watchdog ticks.

A session lives on the worker that answered its first frame: ``open`` attaches it there, and
``destroy`` or ``detach`` (the session ended without a destroy) take it off; the engine never
counts for the pool.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from aiges.engine.backend import Backend, Estimate, WorkerRef
from aiges.engine.items import WorkerInfo
from aiges.engine.messages import (
    Call,
    Destroy,
    Finish,
    Once,
    OnceReply,
    Open,
    Opened,
    Pause,
    Resume,
    WorkerSettings,
    Write,
)
from aiges.engine.pool.calls import PendingCall
from aiges.engine.pool.dispatch import Dispatcher
from aiges.engine.pool.generations import Generations
from aiges.engine.pool.launcher import Launcher, ProcessLauncher
from aiges.engine.pool.records import PoolSettings, ReloadOutcome, WorkerInitError, WorkerLoad, WorkerStatus
from aiges.engine.pool.replicator import ResourceReplicator
from aiges.engine.pool.slots import SlotRole, WorkerSlot
from aiges.engine.pool.starter import Starter
from aiges.engine.pool.worker import PoolListener, Worker
from aiges.engine.resources import Resource, ResourceStore
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.pool")


class WorkerPool:
    def __init__(self, settings: PoolSettings, listener: PoolListener, launcher: Launcher | None = None) -> None:
        self.settings = settings
        self.listener = listener
        self.launcher: Launcher = launcher or ProcessLauncher()
        self._ids = itertools.count(1)
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dispatcher = Dispatcher(settings.exec_timeout_ms, self._spawn_task)
        self.starter = Starter(settings, self.launcher, self, listener, self._is_stopping, self._changed)
        self.generations = Generations(settings, self.starter, self._changed, self._is_stopping, self._spawn_task)
        self.replicator = ResourceReplicator(
            ResourceStore(settings.resource_count, settings.resource_bytes), self.generations.holders, self.new_id
        )

    # -- state --------------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self.generations.number

    @property
    def reloading(self) -> bool:
        return self.generations.reloading

    @property
    def last_reload(self) -> ReloadOutcome | None:
        return self.generations.last_reload

    @property
    def resources(self) -> ResourceStore:
        return self.replicator.store

    @property
    def slots(self) -> list[WorkerSlot]:
        """The serving generation."""
        return self.generations.serving

    @property
    def workers(self) -> list[Worker]:
        return self.generations.workers()

    @property
    def live(self) -> bool:
        """False once a slot has failed ``start_failures`` starts in a row: the process should be
        restarted by whoever supervises it (a reload's failed start does not count: the old
        generation serves on)."""
        return all(slot.failed_starts < self.settings.start_failures for slot in self.generations.serving)

    def info(self) -> WorkerInfo | None:
        """What the newest worker that started reported (service, version, schema...)."""
        generations = self.generations
        slots = (*generations.active(), *generations.serving, *generations.retiring)
        return next((s.worker.info for s in slots if s.worker is not None and s.worker.info is not None), None)

    def status(self) -> list[WorkerStatus]:
        """One entry per index (the worker that takes its new calls); ``retiring_status`` has
        the old workers a reload replaced."""
        return [slot.status() for slot in self.generations.active()]

    def retiring_status(self) -> list[WorkerStatus]:
        return [slot.status() for slot in self.generations.retiring]

    def loads(self) -> list[WorkerLoad]:
        """What each worker that takes new calls has queued and how fast it serves."""
        return [
            WorkerLoad(w.index, w.queued, w.calls.in_flight, w.sessions, w.service_time.seconds)
            for w in self.dispatcher.takers
            if w.ready
        ]

    def _changed(self) -> None:
        self.dispatcher.refresh(self.generations.takers())
        self.listener.on_state_changed()

    def _is_stopping(self) -> bool:
        return self._stopping

    # -- starting and stopping ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each has run wrapperInit; raises WorkerInitError."""
        starter = self.starter
        workers = await asyncio.gather(*(starter.spawn(slot) for slot in self.generations.serving))
        results = await asyncio.gather(*(starter.started(w) for w in workers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop(timeout_s=2.0)
            raise WorkerInitError(str(failures[0]))
        self._watchdog = asyncio.create_task(self._watch())

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to run wrapperFini and exit; kill those that do not in time."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        workers = self.generations.workers()
        for worker in workers:
            worker.ask_to_exit()
        processes = [w.process for w in workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), timeout_s)
        except asyncio.TimeoutError:
            for process in processes:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        for worker in workers:
            worker.close()
            worker.fail_calls(shutting_down())
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what workers say (WorkerEvents) ------------------------------------------------------------

    def on_state_changed(self, worker: Worker) -> None:
        self._changed()

    def on_ready(self, worker: Worker, info: WorkerInfo) -> None:
        if self.replicator.store.loaded:  # loaded first, then ready
            self._spawn_task(self._replay(worker, info))
        else:
            worker.mark_ready(info)

    def on_answered(self, worker: Worker) -> None:
        self.dispatcher.pump()

    def on_closed(self, worker: Worker) -> None:
        if worker.info is not None:  # it had started: a death
            self._spawn_task(self._after_death(worker))
        else:
            self._spawn_task(self.starter.after_failed_start(worker))

    async def _replay(self, worker: Worker, info: WorkerInfo) -> None:
        """A resource the starting worker cannot load fails its start (it could not serve the
        calls that name it)."""
        try:
            if await self.replicator.replay(worker):
                worker.mark_ready(info)
        except AigesError as exc:
            reason = f"it could not load the kept resources: {exc.message}"
            log.error("worker start failed", worker=worker.index, reason=reason)
            worker.fail_start(f"worker {worker.index}: {reason}")
            worker.kill(reason)

    async def _after_death(self, worker: Worker) -> None:
        reason = await worker.exit_reason()
        worker.close_rings()
        if self._stopping:
            worker.fail_calls(shutting_down())
            return
        if worker.slot.role is SlotRole.RETIRING:
            calls = worker.fail_calls(
                AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} was retired by a reload: {reason}")
            )
            log.info("old worker stopped", worker=worker.index, generation=worker.slot.generation, calls=calls)
            if worker.sessions:
                self.listener.on_worker_lost(worker, "its generation was replaced by a reload")
            return
        log.warning("worker lost", worker=worker.index, reason=reason, calls=len(worker.calls))
        self.dispatcher.take_over(worker, reason)
        self.listener.on_worker_lost(worker, reason)
        await self.starter.restart(worker.slot, worker)

    async def _watch(self) -> None:
        limit_ms = self.settings.exec_timeout_ms
        tick = min(max(limit_ms / 1000 / 20, 0.01), 0.5)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for worker in self.generations.workers():
                worker.watch(now, limit_ms)
            self.dispatcher.expire(now)

    # -- calls (the Backend protocol) ---------------------------------------------------------------

    def new_id(self) -> int:
        """An id for a call message (its answer is matched by it)."""
        return next(self._ids)

    async def _dispatch(self, message: Once | Open, priority: int) -> PendingCall:
        """Run a one-shot or a first frame on a worker as soon as one has room (another, if that
        one dies before starting it); the call, answered."""
        call = PendingCall(
            asyncio.get_running_loop().create_future(),
            message,
            time.monotonic(),
            True,
            priority=priority,
            deadline=message.context.deadline,
        )
        self.dispatcher.enqueue(call)
        await call.future
        return call

    async def once(self, message: Once, priority: int = 0) -> tuple[Worker, OnceReply]:
        call = await self._dispatch(message, priority)
        worker = call.worker
        assert worker is not None
        reply: OnceReply = call.future.result()
        return worker, reply

    async def open(self, message: Open, priority: int = 0) -> tuple[Worker, Opened]:
        call = await self._dispatch(message, priority)
        worker = call.worker
        assert worker is not None
        worker.attach_session()
        opened: Opened = call.future.result()
        return worker, opened

    def estimate(self, priority: int) -> Estimate | None:
        """How long a new first frame of ``priority`` would wait, and then run."""
        return self.dispatcher.estimate(priority)

    def evict_below(self, priority: int) -> int | None:
        """Refuse the least urgent waiting first frame, if it is less urgent than ``priority``."""
        return self.dispatcher.evict_below(priority)

    async def write(self, worker: WorkerRef, message: Write) -> None:
        await self._on(worker, message)

    async def finish(self, worker: WorkerRef, message: Finish) -> None:
        await self._on(worker, message)

    async def destroy(self, worker: WorkerRef, message: Destroy) -> None:
        self.detach(worker)
        await self._on(worker, message)

    def detach(self, worker: WorkerRef) -> None:
        own(worker).detach_session()

    def notify(self, worker: WorkerRef, message: Pause | Resume) -> None:
        own(worker).notify(message)

    def _on(self, worker: WorkerRef, message: Call) -> asyncio.Future[Any]:
        target = own(worker)
        if not target.ready:
            raise AigesError(ErrorCode.WORKER_CRASH, f"worker {target.index} is not running")
        return target.request(message)

    def cancel(self, call_id: int) -> bool:
        """Tell the worker that has a call that its caller went away (it does not start it, or
        tells the wrapper); False if no worker has it."""
        return any(worker.cancel(call_id) for worker in self.generations.workers())

    def withdraw(self, call_id: int) -> bool:
        """Drop a one-shot or first frame nobody waits for, if no worker has it yet: it never
        reaches the wrapper, and its ``once``/``open`` raises CancelledError. False if a worker
        has it (it will run it) or it is not known."""
        return self.dispatcher.withdraw(call_id)

    # -- resources and reload -----------------------------------------------------------------------

    async def load_resource(self, resource: Resource) -> None:
        await self.replicator.load(resource)

    async def unload_resource(self, res_id: int) -> None:
        await self.replicator.unload(res_id)

    async def reload(self, settings: WorkerSettings, drain_timeout_s: float) -> ReloadOutcome:
        return await self.generations.reload(settings, drain_timeout_s)


def own(worker: WorkerRef) -> Worker:
    """A session's worker, as this pool made it."""
    if not isinstance(worker, Worker):
        raise TypeError(f"not a worker of this pool: {worker!r}")
    return worker


def shutting_down() -> AigesError:
    return AigesError(ErrorCode.WRAPPER_EXEC, "server is shutting down")


if TYPE_CHECKING:

    def _is_a_backend(pool: WorkerPool) -> Backend:
        return pool  # mypy checks that the pool implements the protocol
