"""The worker pool: the only code that knows about processes and GPUs.

A ``WorkerSlot`` per worker (its index, its GPU, its restarts) owns one ``Worker`` at a time: a
``python -m aiges.worker`` child started with ``CUDA_VISIBLE_DEVICES`` set to the slot's GPU
before the interpreter starts, and a fresh ``Worker`` each time the slot is started again, whose
``state`` says where it is (starting, ready, stopping, dead). A session belongs to a ``Worker``,
so a restarted slot never answers for its predecessor's sessions.

Calls go to the least-loaded ready worker and are pipelined on its socket; a worker runs them one
at a time in order, so the call at the head of its queue is the one executing, and it started
when the previous answer arrived. That gives the watchdog an exact exec time without any extra
message: a call past ``exec_timeout_ms`` gets 10102 and its worker is killed and replaced.

When a worker dies, the call it was executing fails (10909 with the exit reason), queued
one-shot calls it never started move to another worker, and the listener (the engine) is told, so
that it ends the worker's sessions.

Personalised resources (``AILoad``) are kept here (``resources.ResourceStore``) and loaded in
every worker; a worker that starts (a restart, a reload) loads all of them before it is ready.

A reload starts a new generation of slots, one per index, with settings read afresh. Each new
worker takes the new calls and sessions of its index as soon as it is ready, in place of the old
one, which keeps serving the sessions it holds; once every new worker is ready the old
generation retires: its workers finish their calls and sessions (within the drain timeout) and
stop. If a new worker fails to start, the reload is abandoned: the old generation takes every new
call again and the new workers that did start retire the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import os
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog

from aiges.engine import ipc
from aiges.engine.backend import WorkerRef
from aiges.engine.items import WorkerInfo
from aiges.engine.messages import (
    Call,
    Destroy,
    Done,
    Failed,
    Fini,
    Finish,
    Init,
    InitFailed,
    LoadResource,
    Once,
    OnceReply,
    Open,
    Opened,
    Ready,
    Report,
    SessionFailed,
    SessionOutput,
    Started,
    UnloadResource,
    WorkerSettings,
    Write,
)
from aiges.engine.resources import Resource, ResourceStore
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import BATCH_SIZE, LEGS

log = structlog.get_logger("aiges.pool")

RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
# Thread pools of numeric libraries: sized per worker, so N workers do not each start one thread
# per core (unless the environment already says otherwise).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


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


class WorkerInitError(Exception):
    """A worker could not load or initialise the wrapper at start-up; the text says why."""


class WorkerState(enum.Enum):
    STARTING = "starting"
    """Spawned; wrapperInit is running."""
    READY = "ready"
    """Serving calls."""
    STOPPING = "stopping"
    """Being killed, or asked to run wrapperFini and exit."""
    DEAD = "dead"
    """Its process is gone."""


class SlotRole(enum.Enum):
    SERVING = "serving"
    """Of the generation that takes new calls (or, while a reload starts its replacement, until
    the replacement is ready)."""
    INCOMING = "incoming"
    """Of a reload's new generation: takes its index's new calls once its worker is ready."""
    RETIRING = "retiring"
    """Of a replaced (or abandoned) generation: finishes its calls and sessions, takes no new
    ones, is never restarted, and stops."""


@dataclass(slots=True)
class PoolSettings:
    worker: WorkerSettings
    gpus: list[str]
    exec_timeout_ms: int
    shm_bytes: int = 64 << 20
    threads: int = 0
    ready_timeout_ms: int = 0
    start_failures: int = 3
    resource_count: int = 100
    resource_bytes: int = 256 << 20


class Process(Protocol):
    """A running worker: an ``asyncio.subprocess.Process``, or a stand-in in tests."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    async def launch(
        self, slot: WorkerSlot, channel: Any, rings: tuple[ShmRing, ShmRing] | None, settings: PoolSettings
    ) -> Process:
        """Start a worker on the worker end of ``channel`` (a socket) and its rings."""


class PoolListener(Protocol):
    """Where the pool reports what its workers say on their own (the engine)."""

    def on_output(self, message: SessionOutput) -> None: ...

    def on_output_failed(self, message: SessionFailed) -> None: ...

    def on_worker_lost(self, worker: Worker, reason: str) -> None: ...

    def on_report(self, message: Report) -> None: ...

    def on_state_changed(self) -> None: ...


@dataclass(slots=True, eq=False)
class PendingCall:
    future: asyncio.Future[Any]
    message: Call
    created_at: float
    retryable: bool
    sent_at: float = 0.0
    worker: Worker | None = None
    started: bool = False


@dataclass(eq=False)
class WorkerSlot:
    """One place in the pool: its index and GPU, how often it was restarted, and its worker."""

    index: int
    gpu: str
    restarts: int = 0
    failed_starts: int = 0
    """Starts that failed in a row (init error, death or ready timeout); 0 once one succeeds."""
    worker: Worker | None = None
    settings: WorkerSettings | None = None
    """What its workers are started with (the pool's, unless a reload gave it its own)."""
    generation: int = 1
    role: SlotRole = SlotRole.SERVING
    replacement: WorkerSlot | None = None
    """While a reload runs: the new generation's slot for this index."""


@dataclass(eq=False)
class Worker:
    """One worker process, from its spawn to its death; the slot gets a new one on restart."""

    slot: WorkerSlot
    channel: ipc.AsyncChannel
    rings: tuple[ShmRing, ShmRing] | None
    started: asyncio.Future[WorkerInfo]
    process: Process | None = None
    state: WorkerState = WorkerState.STARTING
    info: WorkerInfo | None = None
    pending: dict[int, PendingCall] = field(default_factory=dict)
    last_reply_at: float = 0.0
    sessions: int = 0
    in_flight: int = 0
    """Calls sent and not answered yet."""
    held: int = 0
    """Calls queued but not sent, while the worker is busy (see ``WorkerPool._send``)."""
    kill_reason: str = ""
    head_resolved: bool = False
    """The call at the head of ``pending`` was failed by the watchdog (it was running)."""
    resources: dict[int, Resource] = field(default_factory=dict)
    """The kept resources loaded in this worker (the server's copy each was loaded from)."""

    @property
    def index(self) -> int:
        return self.slot.index

    @property
    def gpu(self) -> str:
        return self.slot.gpu

    @property
    def ready(self) -> bool:
        return self.state is WorkerState.READY

    @property
    def load(self) -> int:
        """Calls in flight plus open sessions: what the least-loaded choice compares."""
        return len(self.pending) + self.sessions


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    index: int
    gpu: str
    state: str
    pid: int | None
    restarts: int
    failed_starts: int
    generation: int = 1


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: ``ok`` once the new generation serves every index; else ``error``
    says why, and the old generation serves on."""

    ok: bool
    generation: int
    workers: int
    ms: int
    error: str = ""
    retiring: int = 0
    """Old workers left to finish their calls and sessions."""


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "its connection closed"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name}"
    return f"it exited with code {returncode}"


class ProcessLauncher:
    """Workers as ``python -m aiges.worker`` children, in their own session (a signal to the
    server's process group does not reach them; the server stops them), their output logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def launch(
        self, slot: WorkerSlot, channel: Any, rings: tuple[ShmRing, ShmRing] | None, settings: PoolSettings
    ) -> Process:
        ring_args = ("--rings", f"{rings[0].fd},{rings[1].fd},{settings.shm_bytes}") if rings else ()
        passed = (channel.fileno(), *((rings[0].fd, rings[1].fd) if rings else ()))
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        env["AIGES_WORKER_ID"] = str(slot.index)
        threads = settings.threads or max((os.cpu_count() or 1) // len(settings.gpus), 1)
        for variable in THREAD_VARIABLES:
            env.setdefault(variable, str(threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiges.worker",
            "--fd",
            str(channel.fileno()),
            "--worker-id",
            str(slot.index),
            "--exec-timeout-ms",
            str(settings.exec_timeout_ms),
            *ring_args,
            pass_fds=passed,
            env=env,
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            task = asyncio.create_task(self._pump(slot.index, stream, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return process

    @staticmethod
    async def _pump(index: int, stream: asyncio.StreamReader, name: str) -> None:
        """Log what the wrapper prints, one event per line, tagged with the worker."""
        levels = {"ERROR": log.error, "CRITICAL": log.error, "WARNING": log.warning, "DEBUG": log.debug}
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if not text:
                continue
            emit = levels.get(text.split(" ", 1)[0], log.info)
            emit("wrapper output", worker=index, stream=name, line=text)


class WorkerPool:
    def __init__(self, settings: PoolSettings, listener: PoolListener, launcher: Launcher | None = None) -> None:
        self.settings = settings
        self.listener = listener
        self.launcher: Launcher = launcher or ProcessLauncher()
        self.slots = [WorkerSlot(index=i, gpu=g, settings=settings.worker) for i, g in enumerate(settings.gpus)]
        """The serving generation."""
        self.incoming: list[WorkerSlot] = []
        """A running reload's new generation."""
        self.retiring: list[WorkerSlot] = []
        """Replaced or abandoned slots whose workers are finishing."""
        self.generation = 1
        self.reloading = False
        self.last_reload: ReloadOutcome | None = None
        self.resources = ResourceStore(settings.resource_count, settings.resource_bytes)
        self._resource_lock = asyncio.Lock()
        self._takers: list[Worker] = []
        """The workers that take new calls and sessions (see ``_takes_new_calls``)."""
        self._ids = itertools.count(1)
        self._any_ready = asyncio.Event()
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- state ----------------------------------------------------------------------------------------

    @property
    def workers(self) -> list[Worker]:
        """Every worker: a reload's new ones, the serving ones, the retiring ones."""
        return [slot.worker for slot in (*self.incoming, *self.slots, *self.retiring) if slot.worker is not None]

    @property
    def ready_count(self) -> int:
        return sum(1 for slot in self._active_slots() if slot.worker is not None and slot.worker.ready)

    @property
    def restart_count(self) -> int:
        return sum(slot.restarts for slot in self._active_slots())

    @property
    def live(self) -> bool:
        """False once a slot has failed ``start_failures`` starts in a row: the process should be
        restarted by whoever supervises it (a reload's failed start does not count: the old
        generation serves on)."""
        return all(slot.failed_starts < self.settings.start_failures for slot in self.slots)

    def info(self) -> WorkerInfo | None:
        """What the newest worker that started reported (service, version, schema...)."""
        slots = (*self._active_slots(), *self.slots, *self.retiring)
        return next((s.worker.info for s in slots if s.worker is not None and s.worker.info is not None), None)

    def _active_slots(self) -> list[WorkerSlot]:
        """Per index, the slot that takes its new calls: a reload's new one once its worker is
        ready, else the serving one."""
        active = []
        for slot in self.slots:
            new = slot.replacement
            active.append(new if new is not None and new.worker is not None and new.worker.ready else slot)
        return active

    def status(self) -> list[WorkerStatus]:
        """One entry per index (the worker that takes its new calls); ``retiring_status`` has
        the old workers a reload replaced."""
        return [self._slot_status(slot) for slot in self._active_slots()]

    def retiring_status(self) -> list[WorkerStatus]:
        return [self._slot_status(slot) for slot in self.retiring]

    @staticmethod
    def _slot_status(slot: WorkerSlot) -> WorkerStatus:
        worker = slot.worker
        return WorkerStatus(
            index=slot.index,
            gpu=slot.gpu,
            state=worker.state.value if worker is not None else WorkerState.DEAD.value,
            pid=worker.info.pid if worker is not None and worker.info and worker.ready else None,
            restarts=slot.restarts,
            failed_starts=slot.failed_starts,
            generation=slot.generation,
        )

    @staticmethod
    def _takes_new_calls(worker: Worker) -> bool:
        slot = worker.slot
        if slot.role is SlotRole.RETIRING:
            return False
        if slot.role is SlotRole.SERVING and slot.replacement is not None:
            new = slot.replacement.worker
            return new is None or not new.ready
        return True

    def _changed(self) -> None:
        self._takers = [w for w in self.workers if self._takes_new_calls(w)]
        if any(w.ready for w in self._takers):
            self._any_ready.set()
        else:
            self._any_ready.clear()
        self.listener.on_state_changed()

    # -- starting and stopping --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each has run wrapperInit; raises WorkerInitError."""
        workers = await asyncio.gather(*(self._spawn(slot) for slot in self.slots))
        results = await asyncio.gather(*(self._started(w) for w in workers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop(timeout_s=2.0)
            raise WorkerInitError(str(failures[0]))
        self._watchdog = asyncio.create_task(self._watch())

    async def _spawn(self, slot: WorkerSlot) -> Worker:
        server_end, worker_end = ipc.socket_pair()
        size = self.settings.shm_bytes
        rings = (ShmRing(size), ShmRing(size)) if size else None
        loop = asyncio.get_running_loop()
        worker = Worker(slot=slot, channel=None, rings=rings, started=loop.create_future())  # type: ignore[arg-type]
        worker.channel = ipc.AsyncChannel(
            server_end,
            on_message=partial(self._on_message, worker),
            on_close=partial(self._on_closed, worker),
            send_ring=rings[0] if rings else None,
            recv_ring=rings[1] if rings else None,
        )
        slot.worker = worker
        try:
            worker.process = await self.launcher.launch(slot, worker_end, rings, self.settings)
        except OSError as exc:
            worker.channel.close()
            raise WorkerInitError(f"worker {slot.index} could not be started: {exc}") from None
        finally:
            worker_end.close()
        worker.channel.send(Init(slot.settings or self.settings.worker))
        return worker

    async def _started(self, worker: Worker) -> None:
        """Wait for a spawned worker's wrapperInit; past ``ready_timeout_ms`` it is killed and
        this raises WorkerInitError, as a failed init does."""
        timeout = self.settings.ready_timeout_ms / 1000 or None
        try:
            await asyncio.wait_for(asyncio.shield(worker.started), timeout)
        except asyncio.TimeoutError:
            reason = f"wrapperInit did not finish within ready_timeout_ms={self.settings.ready_timeout_ms}"
            self.kill(worker, reason)
            with contextlib.suppress(WorkerInitError):
                await worker.started  # settles once the process is gone
            raise WorkerInitError(f"worker {worker.index}: {reason}") from None

    def _on_closed(self, worker: Worker) -> None:
        worker.state = WorkerState.DEAD
        self._changed()
        if worker.info is not None:  # it had started: a death
            self._spawn_task(self._after_death(worker))
        else:
            self._spawn_task(self._after_failed_start(worker))

    async def _exit_reason(self, worker: Worker) -> str:
        process = worker.process
        if process is None:
            return describe_exit(None)
        try:
            returncode = await asyncio.wait_for(process.wait(), 5.0)
        except asyncio.TimeoutError:
            process.kill()
            returncode = await process.wait()
        return worker.kill_reason or describe_exit(returncode)

    async def _after_failed_start(self, worker: Worker) -> None:
        reason = await self._exit_reason(worker)
        self._close_rings(worker)
        for call in worker.pending.values():  # resources it was loading
            if not call.future.done():
                call.future.set_exception(AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index}: {reason}"))
        worker.pending.clear()
        if not worker.started.done():
            worker.started.set_exception(WorkerInitError(f"worker {worker.index} died during start-up: {reason}"))

    async def _after_death(self, worker: Worker) -> None:
        reason = await self._exit_reason(worker)
        self._close_rings(worker)
        pending = list(worker.pending.values())
        worker.pending.clear()
        if self._stopping:
            return
        if worker.slot.role is SlotRole.RETIRING:
            self._retired(worker, reason, pending)
            return
        log.warning("worker lost", worker=worker.index, reason=reason, calls=len(pending))
        first_unstarted = 0 if worker.head_resolved else 1
        for position, call in enumerate(pending):
            if call.future.done():
                continue
            if call.retryable and position >= first_unstarted and not call.started:
                self._spawn_task(self._redispatch(call))
            else:
                code = ErrorCode.WRAPPER_EXEC if isinstance(call.message, (Once, Open)) else ErrorCode.WORKER_CRASH
                call.future.set_exception(AigesError(code, f"worker {worker.index} stopped during the call: {reason}"))
        self.listener.on_worker_lost(worker, reason)
        await self._restart(worker.slot, worker)

    def _retired(self, worker: Worker, reason: str, pending: list[PendingCall]) -> None:
        """A retiring worker has stopped: what it still held (only past the drain timeout) ends."""
        for call in pending:
            if not call.future.done():
                call.future.set_exception(
                    AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} was retired by a reload: {reason}")
                )
        log.info("old worker stopped", worker=worker.index, generation=worker.slot.generation, calls=len(pending))
        if worker.sessions:
            self.listener.on_worker_lost(worker, "its generation was replaced by a reload")

    async def _restart(self, slot: WorkerSlot, lost: Worker) -> None:
        for attempt in itertools.count():
            if self._stopping or slot.worker is not lost or slot.role is SlotRole.RETIRING:
                return
            await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
            if self._stopping:
                return
            slot.restarts += 1
            try:
                await self._started(await self._spawn(slot))
            except (WorkerInitError, OSError) as exc:
                lost = slot.worker or lost  # the attempt that failed is the one to replace next
                slot.failed_starts += 1
                self._changed()
                log.error("worker restart failed", worker=slot.index, error=str(exc), failed_starts=slot.failed_starts)
                process = lost.process
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()
                continue
            slot.failed_starts = 0
            self._changed()
            return

    @staticmethod
    def _close_rings(worker: Worker) -> None:
        if worker.rings is not None:
            for ring in worker.rings:
                ring.close()
            worker.rings = None

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def kill(self, worker: Worker, reason: str) -> None:
        """SIGKILL a worker; its death is handled like any other (restart, calls failed or moved)."""
        worker.kill_reason = reason
        if worker.state in (WorkerState.STARTING, WorkerState.READY):
            worker.state = WorkerState.STOPPING
            self._changed()
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to run wrapperFini and exit; kill those that do not in time."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        workers = self.workers
        for worker in workers:
            worker.state = WorkerState.STOPPING if worker.state is not WorkerState.DEAD else worker.state
            if not worker.channel.closed:
                with contextlib.suppress(ConnectionResetError):
                    worker.channel.send(Fini())
        processes = [w.process for w in workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), timeout_s)
        except asyncio.TimeoutError:
            for process in processes:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        for worker in workers:
            worker.channel.close()
            self._close_rings(worker)
            for call in worker.pending.values():
                if not call.future.done():
                    call.future.set_exception(AigesError(ErrorCode.WRAPPER_EXEC, "server is shutting down"))
            worker.pending.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    # -- what workers say --------------------------------------------------------------------------------

    def _on_message(self, worker: Worker, message: Any) -> None:
        match message:
            case Done() | Failed():
                self._answered(worker, message)
            case SessionOutput():
                self.listener.on_output(message)
            case SessionFailed():
                self.listener.on_output_failed(message)
            case Started(call_ids=call_ids):
                for call_id in call_ids:
                    call = worker.pending.get(call_id)
                    if call is not None:
                        call.started = True
                BATCH_SIZE.observe(len(call_ids))
            case Ready(info=info):
                if self.resources.loaded:  # loaded first, then ready
                    self._spawn_task(self._replay(worker, info))
                else:
                    self._mark_ready(worker, info)
            case InitFailed(reason=reason):
                if not worker.started.done():
                    worker.started.set_exception(WorkerInitError(reason))
            case _:
                self.listener.on_report(message)

    def _answered(self, worker: Worker, answer: Done | Failed) -> None:
        call = worker.pending.pop(answer.call_id, None)
        now = time.monotonic()
        worker.last_reply_at = now
        worker.in_flight -= 1
        if worker.in_flight <= 0 and worker.held:
            worker.in_flight, worker.held = worker.held, 0
            worker.channel.flush()
        if call is None:
            return
        timings = answer.timings
        LEGS.record(
            CALL_KINDS[type(call.message)],
            queue=(call.sent_at - call.created_at)
            + (timings.started_at - timings.received_at)
            + max(min(timings.free_at, timings.received_at) - call.sent_at, 0.0),
            ipc_in=timings.received_at - max(call.sent_at, timings.free_at),
            exec_=timings.finished_at - timings.started_at,
            ipc_out=now - timings.finished_at,
        )
        if call.future.done():
            return
        call.worker = worker
        if isinstance(answer, Done):
            call.future.set_result(answer.value)
        else:
            call.future.set_exception(AigesError(answer.code, answer.message))

    def _mark_ready(self, worker: Worker, info: WorkerInfo) -> None:
        worker.info = info
        worker.state = WorkerState.READY
        worker.last_reply_at = time.monotonic()
        log.info(
            "worker ready",
            worker=worker.index,
            pid=info.pid,
            gpu=worker.gpu or "none",
            style=info.style,
            restarts=worker.slot.restarts,
            generation=worker.slot.generation,
            resources=len(worker.resources),
        )
        self._changed()
        if not worker.started.done():
            worker.started.set_result(info)

    async def _replay(self, worker: Worker, info: WorkerInfo) -> None:
        """Load every kept resource in a worker that has just run wrapperInit, then mark it
        ready. Loads and unloads made meanwhile are caught up with until nothing is left to do,
        so that a ready worker holds exactly the kept set. A resource it cannot load fails its
        start (it could not serve the calls that name it)."""
        try:
            while worker.state is WorkerState.STARTING:
                loaded = self.resources.loaded
                missing = [r for r in loaded.values() if worker.resources.get(r.res_id) is not r]
                stale = [res_id for res_id in worker.resources if res_id not in loaded]
                if not missing and not stale:
                    self._mark_ready(worker, info)
                    return
                for resource in missing:
                    await self._call_on(worker, LoadResource(self.new_id(), resource.res_id, resource.items))
                    worker.resources[resource.res_id] = resource
                for res_id in stale:
                    await self._call_on(worker, UnloadResource(self.new_id(), res_id))
                    worker.resources.pop(res_id, None)
        except AigesError as exc:
            reason = f"it could not load the kept resources: {exc.message}"
            log.error("worker start failed", worker=worker.index, reason=reason)
            if not worker.started.done():
                worker.started.set_exception(WorkerInitError(f"worker {worker.index}: {reason}"))
            self.kill(worker, reason)

    async def _call_on(self, worker: Worker, message: Call) -> Any:
        """A call to this worker whatever its state (a starting worker's resource loads)."""
        call = PendingCall(asyncio.get_running_loop().create_future(), message, time.monotonic(), False)
        self._send(worker, call)
        return await call.future

    # -- personalised resources ---------------------------------------------------------------------

    def _holders(self) -> list[Worker]:
        """The ready workers that keep the loaded resources: all but the retiring ones."""
        return [w for w in self.workers if w.ready and w.slot.role is not SlotRole.RETIRING]

    async def load_resource(self, resource: Resource) -> None:
        """Keep ``resource`` and load it in every ready worker (a worker that starts later loads
        it then). If any fails, every worker is put back as it was and the error is raised.
        A resource with a loaded id replaces it (wrapperLoadRes is called again)."""
        async with self._resource_lock:
            self.resources.check(resource)
            previous = self.resources.get(resource.res_id)
            self.resources.put(resource)
            holders = self._holders()  # in the same step: a worker ready later replays the store
            results = await asyncio.gather(*(self._load_in(w, resource) for w in holders), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if not failures:
                log.info("resource loaded", res_id=resource.res_id, bytes=resource.size, workers=len(holders))
                return
            if previous is None:
                self.resources.remove(resource.res_id)
            else:
                self.resources.put(previous)
            # every worker that now holds it: those that loaded it here, and any that started meanwhile
            loaded = [w for w in self._holders() if w.resources.get(resource.res_id) is resource]
            await asyncio.gather(
                *(self._put_back(w, resource.res_id, previous) for w in loaded), return_exceptions=True
            )
            error = failures[0]
            log.warning("resource load failed", res_id=resource.res_id, error=str(error))
            raise error if isinstance(error, AigesError) else AigesError(ErrorCode.WRAPPER_LOAD, str(error))

    async def unload_resource(self, res_id: int) -> None:
        """Forget a kept resource and unload it from every worker; 10120 if it is not loaded.
        An unload a wrapper refuses is raised (10904), but the resource is forgotten all the same."""
        async with self._resource_lock:
            self.resources.remove(res_id)
            holders = [w for w in self._holders() if res_id in w.resources]
            results = await asyncio.gather(*(self._unload_in(w, res_id) for w in holders), return_exceptions=True)
            log.info("resource unloaded", res_id=res_id, workers=len(holders))
            for result in results:
                if isinstance(result, AigesError):
                    raise result

    async def _load_in(self, worker: Worker, resource: Resource) -> None:
        await self._call_on(worker, LoadResource(self.new_id(), resource.res_id, resource.items))
        worker.resources[resource.res_id] = resource

    async def _unload_in(self, worker: Worker, res_id: int) -> None:
        worker.resources.pop(res_id, None)
        await self._call_on(worker, UnloadResource(self.new_id(), res_id))

    async def _put_back(self, worker: Worker, res_id: int, previous: Resource | None) -> None:
        if previous is None:
            await self._unload_in(worker, res_id)
        else:
            await self._load_in(worker, previous)

    # -- reload -------------------------------------------------------------------------------------

    async def reload(self, settings: WorkerSettings, drain_timeout_s: float) -> ReloadOutcome:
        """Start a new generation of workers with ``settings``; each takes its index's new calls
        once ready; when all are, the old generation retires (its workers finish their calls
        and sessions within ``drain_timeout_s``, then stop). A new worker that fails to start
        abandons the reload: the old generation serves on, and the outcome says why."""
        if self.reloading:
            raise AigesError(ErrorCode.WRAPPER_INIT, "a reload is already running")
        self.reloading = True
        started_at = time.monotonic()
        generation = self.generation + 1
        incoming = [
            WorkerSlot(
                index=slot.index,
                gpu=slot.gpu,
                restarts=slot.restarts,
                settings=settings,
                generation=generation,
                role=SlotRole.INCOMING,
            )
            for slot in self.slots
        ]
        self.incoming = incoming
        for old, new in zip(self.slots, incoming, strict=True):
            old.replacement = new
        log.info("reload", generation=generation, workers=len(incoming), wrapper=settings.wrapper)
        try:
            error = await self._start_generation(incoming)
        finally:
            self.reloading = False
        ms = int((time.monotonic() - started_at) * 1000)
        if error is not None:
            for old in self.slots:
                old.replacement = None
            self._retire(incoming, drain_timeout_s)
            outcome = ReloadOutcome(False, self.generation, len(self.slots), ms, error)
            log.error("reload failed", generation=generation, error=error, ms=ms)
        else:
            old_slots = self.slots
            for old in old_slots:
                old.replacement = None
            for new in incoming:
                new.role = SlotRole.SERVING
            self.slots, self.incoming = incoming, []
            self.generation = generation
            self.settings.worker = settings
            self._retire(old_slots, drain_timeout_s)
            outcome = ReloadOutcome(True, generation, len(incoming), ms, retiring=len(old_slots))
            log.info("reloaded", generation=generation, workers=len(incoming), ms=ms, retiring=len(old_slots))
        self.last_reload = outcome
        return outcome

    async def _start_generation(self, slots: list[WorkerSlot]) -> str | None:
        """Spawn the slots' workers and wait until all are ready: None, or why one was not (then
        the others still starting are stopped)."""
        workers: list[Worker] = []
        try:
            for slot in slots:
                workers.append(await self._spawn(slot))
        except WorkerInitError as exc:
            error: str | None = str(exc)
        else:
            error = None
            waits = [asyncio.ensure_future(self._started(w)) for w in workers]
            for done in asyncio.as_completed(waits):
                try:
                    await done
                except WorkerInitError as exc:
                    error = str(exc)
                    break
            for wait in waits:
                wait.cancel()
        if error is not None:
            for worker in workers:
                if not worker.ready:
                    self.kill(worker, "the reload was abandoned")
        return error

    def _retire(self, slots: list[WorkerSlot], timeout_s: float) -> None:
        for slot in slots:
            slot.role = SlotRole.RETIRING
        self.retiring.extend(slots)
        self._changed()
        self._spawn_task(self._wind_down(slots, timeout_s))

    async def _wind_down(self, slots: list[WorkerSlot], timeout_s: float) -> None:
        """Let retiring workers finish their calls and sessions (at most ``timeout_s``), then
        ask each to run wrapperFini and exit (killed if it does not within 10 s)."""
        deadline = time.monotonic() + timeout_s
        workers = [slot.worker for slot in slots if slot.worker is not None]

        def busy(worker: Worker) -> bool:
            return worker.ready and bool(worker.pending or worker.sessions)

        while any(busy(w) for w in workers) and time.monotonic() < deadline and not self._stopping:
            await asyncio.sleep(0.05)
        if self._stopping:
            return
        for worker in workers:
            if busy(worker):
                log.warning(
                    "old worker still busy after the drain timeout",
                    worker=worker.index,
                    sessions=worker.sessions,
                    calls=len(worker.pending),
                )
            if worker.state is WorkerState.READY and not worker.channel.closed:
                worker.state = WorkerState.STOPPING
                with contextlib.suppress(ConnectionResetError):
                    worker.channel.send(Fini())
            elif worker.state is not WorkerState.DEAD:
                self.kill(worker, "its generation was replaced by a reload")
        processes = [w.process for w in workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 10.0)
        except asyncio.TimeoutError:
            for worker in workers:
                if worker.process is not None and worker.process.returncode is None:
                    self.kill(worker, "it did not stop within 10 s of wrapperFini")
        for slot in slots:
            if slot in self.retiring:
                self.retiring.remove(slot)
        self._changed()

    # -- calls ------------------------------------------------------------------------------------------

    async def call(
        self, message: Call, *, worker: Worker | None = None, retryable: bool = False
    ) -> tuple[Worker, OnceReply | Opened | None]:
        """Run a call in a worker (``worker``, or the least loaded) and return the worker that
        answered and its answer. A ``retryable`` call that a dying worker never started moves to
        another worker."""
        created = time.monotonic()
        target = worker if worker is not None else await self._pick()
        if worker is not None and not worker.ready:
            raise AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} is not running")
        call = PendingCall(asyncio.get_running_loop().create_future(), message, created, retryable)
        self._send(target, call)
        value = await call.future
        assert call.worker is not None
        return call.worker, value

    def new_id(self) -> int:
        """An id for a call message (the pool matches its answer by it)."""
        return next(self._ids)

    def notify(self, worker: WorkerRef, message: Any) -> None:
        """A one-way message to a worker (no answer): it joins calls being held for the worker,
        or leaves now. Lost, without error, if the worker is gone."""
        worker = self._own(worker)
        if worker.channel.closed or not worker.ready:
            return
        with contextlib.suppress(ConnectionResetError):
            worker.channel.send(message, hold=worker.held > 0)

    async def _redispatch(self, call: PendingCall) -> None:
        try:
            worker = await self._pick()
        except AigesError as exc:
            if not call.future.done():
                call.future.set_exception(exc)
            return
        self._send(worker, call)

    async def _pick(self) -> Worker:
        """The least-loaded ready worker that takes new calls (waits for one while all are
        restarting)."""
        timeout = self.settings.exec_timeout_ms / 1000
        deadline = time.monotonic() + timeout
        while True:
            best = None
            for worker in self._takers:
                if worker.ready and (best is None or worker.load < best.load):
                    best = worker
            if best is not None:
                return best
            self._any_ready.clear()
            try:
                await asyncio.wait_for(self._any_ready.wait(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise AigesError(
                    ErrorCode.WRAPPER_EXEC, f"no worker became ready within {self.settings.exec_timeout_ms} ms"
                ) from None

    def _send(self, worker: Worker, call: PendingCall) -> None:
        """Queue a call for a worker. While the worker still owes answers, new calls are held and
        leave together when the last answer comes (as Nagle's algorithm does for TCP): an idle
        worker gets a call at once, a busy one gets the next batch in one frame group and one
        wake-up, and since a worker runs its calls one after another, holding costs them no time."""
        if call.sent_at:  # sent before, to a worker since lost: under a new id
            call.message = call.message._replace(call_id=next(self._ids))
        call_id = call.message.call_id
        call.sent_at = time.monotonic()
        if not worker.pending:
            worker.last_reply_at = call.sent_at
        worker.pending[call_id] = call
        hold = worker.in_flight > 0 and self.settings.worker.batch_size <= 1
        try:
            worker.channel.send(call.message, hold=hold)
        except ConnectionResetError:
            worker.pending.pop(call_id, None)
            if call.retryable:
                self._spawn_task(self._redispatch(call))
            else:
                call.future.set_exception(AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} is gone"))
            return
        if hold:
            worker.held += 1
        else:
            worker.in_flight += 1 + worker.held
            worker.held = 0

    async def _watch(self) -> None:
        timeout = self.settings.exec_timeout_ms / 1000
        tick = min(max(timeout / 20, 0.01), 0.5)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for worker in self.workers:
                if not worker.ready or not worker.pending:
                    continue
                call_id, call = next(iter(worker.pending.items()))
                started = max(call.sent_at, worker.last_reply_at)
                if now - started <= timeout:
                    continue
                kind = type(call.message).__name__
                timed_out = [call_id] + [i for i, c in worker.pending.items() if c.started and i != call_id]
                for stuck_id in timed_out:
                    stuck = worker.pending.pop(stuck_id)
                    if not stuck.future.done():
                        stuck.future.set_exception(
                            AigesError(
                                ErrorCode.ONCE_TIMEOUT,
                                f"{type(stuck.message).__name__} ran past exec_timeout_ms="
                                f"{self.settings.exec_timeout_ms}; "
                                f"worker {worker.index} is being replaced",
                            )
                        )
                worker.head_resolved = True
                self.kill(worker, f"a {kind} call ran past exec_timeout_ms")

    # -- the Backend protocol (aiges.engine.backend) -------------------------------------------------

    @staticmethod
    def _own(worker: WorkerRef) -> Worker:
        """A session's worker, as this pool made it."""
        assert isinstance(worker, Worker)
        return worker

    async def once(self, message: Once) -> tuple[Worker, OnceReply]:
        worker, value = await self.call(message, retryable=True)
        assert isinstance(value, OnceReply)
        return worker, value

    async def open(self, message: Open) -> tuple[Worker, Opened]:
        worker, value = await self.call(message, retryable=True)
        assert isinstance(value, Opened)
        worker.sessions += 1
        return worker, value

    async def write(self, worker: WorkerRef, message: Write) -> None:
        await self.call(message, worker=self._own(worker))

    async def finish(self, worker: WorkerRef, message: Finish) -> None:
        await self.call(message, worker=self._own(worker))

    async def destroy(self, worker: WorkerRef, message: Destroy) -> None:
        try:
            await self.call(message, worker=self._own(worker))
        finally:
            self.detach(worker)

    def detach(self, worker: WorkerRef) -> None:
        self._own(worker).sessions -= 1
