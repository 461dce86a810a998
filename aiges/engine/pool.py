"""The worker pool: the only code that knows about processes and GPUs.

Each worker is a ``python -m aiges.worker`` child with ``CUDA_VISIBLE_DEVICES`` set to its GPU
before the interpreter starts. Calls go to the least-loaded ready worker and are pipelined on its
socket; a worker runs them one at a time in order, so the call at the head of its queue is the
one executing, and it started when the previous reply arrived. That gives the watchdog an exact
exec time without any extra message: a call past ``exec_timeout_ms`` gets 10102 and its worker is
killed and replaced.

When a worker dies, the call it was executing fails (10909 with the exit reason), queued one-shot
calls it never started move to another worker, and the owner of its sessions is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from aiges.engine import ipc
from aiges.engine.shm import ShmRing
from aiges.engine.types import WorkerInfo
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import BATCH_SIZE, LEGS

REPORT_KINDS = frozenset({"usage", "metric", "lb_labels", "trace"})
"""What a wrapper reports through its callbacks (see ``aiges.server.reports``)."""

log = structlog.get_logger("aiges.pool")

RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
# Thread pools of numeric libraries: sized per worker, so N workers do not each start one thread
# per core (unless the environment already says otherwise).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class WorkerInitError(Exception):
    """A worker could not load or initialise the wrapper at start-up; the text says why."""


@dataclass(slots=True)
class PoolSettings:
    wrapper: str
    wrapper_config: dict[str, str]
    gpus: list[str]
    exec_timeout_ms: int
    header_pass: tuple[str, ...] = ("sid",)
    shm_bytes: int = 64 << 20
    peer_addr: str = ""
    batch_size: int = 1
    batch_delay_ms: int = 0
    threads: int = 0
    async_mode: bool = False
    realtime: bool = True
    log_level: str = "info"
    ready_timeout_ms: int = 0
    start_failures: int = 3


@dataclass(slots=True)
class PendingCall:
    future: asyncio.Future
    message: tuple
    created_at: float
    retryable: bool
    sent_at: float = 0.0
    worker: WorkerHandle | None = None
    started: bool = False


@dataclass(eq=False)
class WorkerHandle:
    """The server's view of one worker process."""

    index: int
    gpu: str
    process: asyncio.subprocess.Process | None = None
    channel: ipc.AsyncChannel | None = None
    rings: tuple[ShmRing, ShmRing] | None = None
    info: WorkerInfo | None = None
    ready: bool = False
    pending: dict[int, PendingCall] = field(default_factory=dict)
    last_reply_at: float = 0.0
    started: asyncio.Future | None = None
    running: bool = False
    sessions: int = 0
    in_flight: int = 0
    held: int = 0
    restarts: int = 0
    failed_starts: int = 0
    """Starts that failed in a row (init error, death or ready timeout); 0 once one succeeds."""
    generation: int = 0
    kill_reason: str = ""
    head_resolved: bool = False

    @property
    def load(self) -> int:
        """Calls in flight plus open sessions: what the least-loaded choice compares."""
        return len(self.pending) + self.sessions


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


class WorkerPool:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.workers = [WorkerHandle(index=i, gpu=g) for i, g in enumerate(settings.gpus)]
        self.on_output: Callable[[str, bytes, bool], None] = lambda tag, output, ended: None
        self.on_output_error: Callable[[str, int, str], None] = lambda tag, code, message: None
        self.on_worker_lost: Callable[[WorkerHandle, str], None] = lambda worker, reason: None
        self.on_report: Callable[[tuple], None] = lambda message: None
        self._ids = itertools.count(1)
        self._any_ready = asyncio.Event()
        self._stopping = False
        self._watchdog: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.state_changed = asyncio.Event()

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    @property
    def restart_count(self) -> int:
        return sum(w.restarts for w in self.workers)

    @property
    def live(self) -> bool:
        """False once a worker has failed ``start_failures`` starts in a row: the process should
        be restarted by whoever supervises it."""
        return all(w.failed_starts < self.settings.start_failures for w in self.workers)

    async def start(self) -> None:
        """Start every worker and wait until each has run wrapperInit; raises WorkerInitError."""
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        results = await asyncio.gather(*(self._started(w) for w in self.workers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop(timeout_s=2.0)
            raise WorkerInitError(str(failures[0]))
        self._watchdog = asyncio.create_task(self._watch())

    async def _started(self, worker: WorkerHandle) -> None:
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

    async def _spawn(self, worker: WorkerHandle) -> None:
        self._close_rings(worker)
        server_end, worker_end = ipc.socket_pair()
        size = self.settings.shm_bytes
        rings = (ShmRing(size), ShmRing(size)) if size else None
        worker.rings = rings
        ring_args = ("--rings", f"{rings[0].fd},{rings[1].fd},{self.settings.shm_bytes}") if rings else ()
        passed = (worker_end.fileno(), *((rings[0].fd, rings[1].fd) if rings else ()))
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = worker.gpu
        env["AIGES_WORKER_ID"] = str(worker.index)
        threads = self.settings.threads or max((os.cpu_count() or 1) // len(self.workers), 1)
        for variable in THREAD_VARIABLES:
            env.setdefault(variable, str(threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        worker.generation += 1
        worker.started = asyncio.get_running_loop().create_future()
        worker.ready = False
        worker.running = False
        worker.info = None
        worker.kill_reason = ""
        worker.head_resolved = False
        worker.in_flight = worker.held = 0
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aiges.worker",
                "--fd", str(worker_end.fileno()), "--worker-id", str(worker.index), *ring_args,
                pass_fds=passed,
                env=env,
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            worker_end.close()
        generation = worker.generation
        worker.channel = ipc.AsyncChannel(
            server_end,
            on_message=partial(self._on_message, worker),
            on_close=partial(self._on_closed, worker, generation),
            send_ring=rings[0] if rings else None,
            recv_ring=rings[1] if rings else None,
        )
        self._spawn_task(self._pump(worker, worker.process.stdout, "stdout"))
        self._spawn_task(self._pump(worker, worker.process.stderr, "stderr"))
        worker.channel.send((
            "init",
            {
                "wrapper": self.settings.wrapper,
                "config": self.settings.wrapper_config,
                "realtime": self.settings.realtime,
                "header_pass": self.settings.header_pass,
                "peer_addr": self.settings.peer_addr,
                "batch_size": self.settings.batch_size,
                "batch_delay_ms": self.settings.batch_delay_ms,
                "async_mode": self.settings.async_mode,
                "log_level": self.settings.log_level,
            },
        ))

    @staticmethod
    def _close_rings(worker: WorkerHandle) -> None:
        if worker.rings is not None:
            for ring in worker.rings:
                ring.close()
            worker.rings = None

    def _spawn_task(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, worker: WorkerHandle, stream: asyncio.StreamReader, name: str) -> None:
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
            emit("wrapper output", worker=worker.index, stream=name, line=text)

    def _on_message(self, worker: WorkerHandle, message: tuple) -> None:
        kind = message[0]
        if kind == "ok" or kind == "err":
            call = worker.pending.pop(message[1], None)
            now = time.monotonic()
            worker.last_reply_at = now
            worker.in_flight -= 1
            if worker.in_flight <= 0 and worker.held:
                worker.in_flight, worker.held = worker.held, 0
                worker.channel.flush()
            if call is None:
                return
            free_at, received_at, started_at, finished_at = message[-1]
            LEGS.record(
                call.message[0],
                queue=(call.sent_at - call.created_at) + (started_at - received_at)
                + max(min(free_at, received_at) - call.sent_at, 0.0),
                ipc_in=received_at - max(call.sent_at, free_at),
                exec_=finished_at - started_at,
                ipc_out=now - finished_at,
            )
            if call.future.done():
                return
            call.worker = worker
            if kind == "ok":
                call.future.set_result(message[2])
            else:
                call.future.set_exception(AigesError(message[2], message[3]))
        elif kind == "started":
            for call_id in message[1]:
                call = worker.pending.get(call_id)
                if call is not None:
                    call.started = True
            BATCH_SIZE.observe(len(message[1]))
        elif kind == "output":
            self.on_output(message[1], message[2], message[3])
        elif kind == "output_error":
            self.on_output_error(message[1], message[2], message[3])
        elif kind == "ready":
            worker.info = message[1]
            worker.ready = True
            worker.running = True
            worker.last_reply_at = time.monotonic()
            self._any_ready.set()
            self.state_changed.set()
            log.info("worker ready", worker=worker.index, pid=worker.info.pid, gpu=worker.gpu or "none",
                     style=worker.info.style, restarts=worker.restarts)
            if not worker.started.done():
                worker.started.set_result(worker.info)
        elif kind in REPORT_KINDS:
            self.on_report(message)
        elif kind == "init_failed" and not worker.started.done():
            worker.started.set_exception(WorkerInitError(message[1]))

    def _on_closed(self, worker: WorkerHandle, generation: int) -> None:
        if generation != worker.generation:
            return
        worker.ready = False
        if not any(w.ready for w in self.workers):
            self._any_ready.clear()
        self.state_changed.set()
        if worker.running:
            worker.running = False
            self._spawn_task(self._after_death(worker, generation))
        else:
            self._spawn_task(self._after_failed_start(worker))

    async def _exit_reason(self, worker: WorkerHandle) -> str:
        process = worker.process
        if process is None:
            return describe_exit(None)
        try:
            returncode = await asyncio.wait_for(process.wait(), 5.0)
        except asyncio.TimeoutError:
            process.kill()
            returncode = await process.wait()
        return worker.kill_reason or describe_exit(returncode)

    async def _after_failed_start(self, worker: WorkerHandle) -> None:
        started = worker.started
        reason = await self._exit_reason(worker)
        if not started.done():
            started.set_exception(WorkerInitError(f"worker {worker.index} died during start-up: {reason}"))

    async def _after_death(self, worker: WorkerHandle, generation: int) -> None:
        reason = await self._exit_reason(worker)
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
                code = ErrorCode.WRAPPER_EXEC if call.message[0] == "first" else ErrorCode.WORKER_CRASH
                call.future.set_exception(AigesError(code, f"worker {worker.index} stopped during the call: {reason}"))
        self.on_worker_lost(worker, reason)
        await self._restart(worker, generation)

    async def _restart(self, worker: WorkerHandle, generation: int) -> None:
        for attempt in itertools.count():
            if self._stopping or generation != worker.generation:
                return
            await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
            if self._stopping:
                return
            worker.restarts += 1
            try:
                await self._spawn(worker)
                await self._started(worker)
                worker.failed_starts = 0
                self.state_changed.set()
                return
            except (WorkerInitError, OSError) as exc:
                worker.failed_starts += 1
                self.state_changed.set()
                log.error("worker restart failed", worker=worker.index, error=str(exc),
                          failed_starts=worker.failed_starts)
                generation = worker.generation
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()

    async def _redispatch(self, call: PendingCall) -> None:
        try:
            worker = await self._pick()
        except AigesError as exc:
            if not call.future.done():
                call.future.set_exception(exc)
            return
        self._send(worker, call)

    async def _pick(self) -> WorkerHandle:
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

    def _send(self, worker: WorkerHandle, call: PendingCall) -> None:
        """Queue a call for a worker. While the worker still owes replies, new calls are held and
        leave together when the last reply comes (as Nagle's algorithm does for TCP): an idle
        worker gets a call at once, a busy one gets the next batch in one frame group and one
        wake-up, and since a worker runs its calls one after another, holding costs them no time."""
        call_id = next(self._ids)
        call.sent_at = time.monotonic()
        if not worker.pending:
            worker.last_reply_at = call.sent_at
        worker.pending[call_id] = call
        hold = worker.in_flight > 0 and self.settings.batch_size <= 1
        try:
            worker.channel.send((call.message[0], call_id, *call.message[1:]), hold=hold)
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

    def notify(self, worker: WorkerHandle, kind: str, *args: Any) -> None:
        """A one-way message to a worker (no reply): it joins calls being held for the worker,
        or leaves now. Lost, without error, if the worker is gone."""
        if worker.channel is None or worker.channel.closed or not worker.ready:
            return
        with contextlib.suppress(ConnectionResetError):
            worker.channel.send((kind, *args), hold=worker.held > 0)

    async def pick(self) -> WorkerHandle:
        """The least-loaded ready worker (waits for one while all are restarting)."""
        return await self._pick()

    async def call(
        self, kind: str, *args: Any, worker: WorkerHandle | None = None, retryable: bool = False,
        with_worker: bool = False,
    ) -> Any:
        """Run ``kind`` in a worker (``worker``, or the least loaded) and return its value, or
        (the worker that ran it, its value) with ``with_worker``. A ``retryable`` call that a dying
        worker never started moves to another worker."""
        created = time.monotonic()
        target = worker if worker is not None else await self._pick()
        if worker is not None and not worker.ready:
            raise AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index} is not running")
        call = PendingCall(asyncio.get_running_loop().create_future(), (kind, *args), created, retryable)
        self._send(target, call)
        value = await call.future
        return (call.worker, value) if with_worker else value

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
                timed_out = [call_id] + [i for i, c in worker.pending.items() if c.started and i != call_id]
                for stuck_id in timed_out:
                    stuck = worker.pending.pop(stuck_id)
                    if not stuck.future.done():
                        stuck.future.set_exception(AigesError(
                            ErrorCode.ONCE_TIMEOUT,
                            f"{stuck.message[0]} ran past exec_timeout_ms={self.settings.exec_timeout_ms}; "
                            f"worker {worker.index} is being replaced",
                        ))
                worker.head_resolved = True
                self.kill(worker, f"a {call.message[0]} call ran past exec_timeout_ms")

    def kill(self, worker: WorkerHandle, reason: str) -> None:
        """SIGKILL a worker; its death is handled like any other (restart, calls failed or moved)."""
        worker.kill_reason = reason
        worker.ready = False
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to run wrapperFini and exit; kill those that do not in time."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for worker in self.workers:
            if worker.channel is not None and not worker.channel.closed:
                with contextlib.suppress(ConnectionResetError):
                    worker.channel.send(("fini",))
        processes = [w.process for w in self.workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), timeout_s)
        except asyncio.TimeoutError:
            for process in processes:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        for worker in self.workers:
            if worker.channel is not None:
                worker.channel.close()
            self._close_rings(worker)
            for call in worker.pending.values():
                if not call.future.done():
                    call.future.set_exception(AigesError(ErrorCode.WRAPPER_EXEC, "server is shutting down"))
            worker.pending.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
