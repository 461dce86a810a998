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
    Once,
    OnceReply,
    Open,
    Opened,
    Ready,
    Report,
    SessionFailed,
    SessionOutput,
    Started,
    WorkerSettings,
    Write,
)
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import BATCH_SIZE, LEGS

log = structlog.get_logger("aiges.pool")

RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
# Thread pools of numeric libraries: sized per worker, so N workers do not each start one thread
# per core (unless the environment already says otherwise).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


CALL_KINDS: dict[type, str] = {Once: "once", Open: "open", Write: "write", Finish: "finish", Destroy: "destroy"}
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


@dataclass(slots=True)
class PoolSettings:
    worker: WorkerSettings
    gpus: list[str]
    exec_timeout_ms: int
    shm_bytes: int = 64 << 20
    threads: int = 0
    ready_timeout_ms: int = 0
    start_failures: int = 3


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
        self.slots = [WorkerSlot(index=i, gpu=g) for i, g in enumerate(settings.gpus)]
        self._ids = itertools.count(1)
        self._any_ready = asyncio.Event()
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- state ----------------------------------------------------------------------------------------

    @property
    def workers(self) -> list[Worker]:
        """The slots' current workers."""
        return [slot.worker for slot in self.slots if slot.worker is not None]

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    @property
    def restart_count(self) -> int:
        return sum(slot.restarts for slot in self.slots)

    @property
    def live(self) -> bool:
        """False once a slot has failed ``start_failures`` starts in a row: the process should be
        restarted by whoever supervises it."""
        return all(slot.failed_starts < self.settings.start_failures for slot in self.slots)

    def info(self) -> WorkerInfo | None:
        """What the first worker that started reported (service, version, schema...)."""
        return next((w.info for w in self.workers if w.info is not None), None)

    def status(self) -> list[WorkerStatus]:
        return [
            WorkerStatus(
                index=slot.index,
                gpu=slot.gpu,
                state=slot.worker.state.value if slot.worker is not None else WorkerState.DEAD.value,
                pid=slot.worker.info.pid
                if slot.worker is not None and slot.worker.info and slot.worker.ready
                else None,
                restarts=slot.restarts,
                failed_starts=slot.failed_starts,
            )
            for slot in self.slots
        ]

    def _changed(self) -> None:
        if any(w.ready for w in self.workers):
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
        worker.channel.send(Init(self.settings.worker))
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
        if not worker.started.done():
            worker.started.set_exception(WorkerInitError(f"worker {worker.index} died during start-up: {reason}"))

    async def _after_death(self, worker: Worker) -> None:
        reason = await self._exit_reason(worker)
        self._close_rings(worker)
        pending = list(worker.pending.values())
        worker.pending.clear()
        if self._stopping:
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

    async def _restart(self, slot: WorkerSlot, lost: Worker) -> None:
        for attempt in itertools.count():
            if self._stopping or slot.worker is not lost:
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
                )
                self._changed()
                if not worker.started.done():
                    worker.started.set_result(info)
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

    def notify(self, worker: Worker, message: Any) -> None:
        """A one-way message to a worker (no answer): it joins calls being held for the worker,
        or leaves now. Lost, without error, if the worker is gone."""
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
        """The least-loaded ready worker (waits for one while all are restarting)."""
        timeout = self.settings.exec_timeout_ms / 1000
        deadline = time.monotonic() + timeout
        while True:
            best = None
            for worker in self.workers:
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
