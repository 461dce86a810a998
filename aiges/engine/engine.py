"""The engine: what every front calls. It owns the licences, the sessions and the worker pool;
nothing above it touches the pool.

    once(context, frame)  -> the one-shot call's output
    open(context, frame)  -> a new Session
    write(session, frame) -> None (outputs arrive in the session's queue)
    read(session, wait_s) -> the next output batch, or None after wait_s
    finish(session) / close(session)
    status() / drain(timeout_s)
    resize_licences(total, timeout_s)          AILBType: the licence count, at run time
    load_resource(res_id, items) / unload_resource(res_id)   AILoad / AIUnLoad, in every worker
    reload(worker_settings, drain_timeout_s)   a new generation of workers, without dropping a call

A frame is a ``messages.Wire`` (a client's protocol bytes, decoded in the worker by that front's
codec) or ``messages.Items`` (a call its front decoded); outputs come back in the frame's form
(encoded bytes, or ``ItemsOutput``). The engine never looks inside a payload.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars

from aiges.engine import ipc
from aiges.engine.context import RequestContext
from aiges.engine.items import DataItem, WorkerInfo
from aiges.engine.licences import Licences
from aiges.engine.messages import (
    Destroy,
    Finish,
    Frame,
    Once,
    OnceReply,
    Open,
    Opened,
    Output,
    Pause,
    Report,
    Resume,
    SessionFailed,
    SessionOutput,
    Wire,
    WorkerSettings,
    Write,
)
from aiges.engine.pool import Launcher, PoolSettings, ReloadOutcome, Worker, WorkerPool, WorkerStatus
from aiges.engine.resources import Resource
from aiges.engine.sessions import Session, SessionTable
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.engine")

OUTPUT_LIMIT_FACTOR = 4
"""A session's unread output may pass its budget while the worker learns to pause, or when the
wrapper pushes through callbacks; past this many budgets the session ends."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    pool: PoolSettings
    licences: int
    session_ttl_ms: int = 15000
    expiry_scan_ms: int = 1000
    session_output_bytes: int = 4 << 20
    log_workers: bool = False
    """Name the worker in each request's log lines (for debug logging: it costs a little per call)."""


@dataclass(frozen=True, slots=True)
class EngineStatus:
    licences_total: int
    licences_used: int
    sessions: int
    inflight: int
    draining: bool
    live: bool
    workers: list[WorkerStatus]
    retiring: list[WorkerStatus] = field(default_factory=list)
    """Old workers a reload replaced, finishing their calls and sessions."""
    generation: int = 1
    reloading: bool = False
    resources: int = 0
    resources_bytes: int = 0

    @property
    def licences_free(self) -> int:
        return self.licences_total - self.licences_used

    @property
    def workers_ready(self) -> int:
        return sum(1 for w in self.workers if w.state == "ready")

    @property
    def worker_restarts(self) -> int:
        return sum(w.restarts for w in self.workers)


@dataclass(slots=True)
class EarlyOutputs:
    """What a session's wrapper threads produced before its first frame's answer reached the
    engine: kept, and handed to the session when it is registered."""

    outputs: list[tuple[Output, bool]] = field(default_factory=list)
    failure: AigesError | None = None


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        reports: Callable[[Report], None] = lambda report: None,
        launcher: Launcher | None = None,
    ) -> None:
        """``reports`` takes what wrappers report through their callbacks (metering, metrics,
        load-balancer labels, trace entries); ``launcher`` starts workers (processes, by default)."""
        self.settings = settings
        self.peer = settings.pool.worker.peer_addr
        self._reports = reports
        self.pool = WorkerPool(settings.pool, self, launcher)
        self.licences = Licences(settings.licences)
        self.sessions = SessionTable()
        self.session_ttl_s = settings.session_ttl_ms / 1000
        self.output_budget = settings.session_output_bytes
        self.output_limit = OUTPUT_LIMIT_FACTOR * settings.session_output_bytes
        self.changed = asyncio.Event()
        """Set when the workers' state changes (health follows it)."""
        self.inflight = 0
        self.draining = False
        self._early: dict[str, EarlyOutputs | None] = {}
        """First frames in flight, by handle (until their answer is handled)."""
        self._destroying: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry: asyncio.Task[None] | None = None
        self._resizing = asyncio.Lock()
        self.lb_type = ""
        """The load-balancer type AILBType set last (``lbType``): "type" in the registry value."""

    # -- life --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers (raises WorkerInitError), then expire idle sessions."""
        await self.pool.start()
        self._expiry = asyncio.create_task(self._expire_idle())

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new calls and sessions (10110, so clients retry elsewhere) and wait until the
        running ones are done; False if some still run after ``timeout_s``."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while not self.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.idle()

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for session in list(self.sessions.open.values()):
            self.close(session, destroy=False)
        await self.pool.stop(timeout_s)

    def idle(self) -> bool:
        """No call running and no session open: nothing a drain still waits for."""
        return self.inflight == 0 and not self.sessions.open

    def status(self) -> EngineStatus:
        return EngineStatus(
            licences_total=self.licences.total,
            licences_used=self.licences.used,
            sessions=len(self.sessions),
            inflight=self.inflight,
            draining=self.draining,
            live=self.pool.live,
            workers=self.pool.status(),
            retiring=self.pool.retiring_status(),
            generation=self.pool.generation,
            reloading=self.pool.reloading,
            resources=len(self.pool.resources),
            resources_bytes=self.pool.resources.size,
        )

    def info(self) -> WorkerInfo | None:
        """What the wrapper is (service, version, capabilities, schema), once a worker has it loaded."""
        return self.pool.info()

    # -- runtime control ---------------------------------------------------------------------------------

    async def resize_licences(self, total: int, timeout_s: float, lb_type: str | None = None) -> None:
        """Set the licence count (AILBType ``authzNo``). Growing takes effect at once. Shrinking
        admits nothing new until the licences in use are under the new count, and waits at most
        ``timeout_s`` for the running calls and sessions to end on their own (none is cut); if
        they do not, the count goes back to what it was and this raises 10104. ``lb_type``
        (AILBType ``lbType``), when given, is kept for the registry value once the resize is done."""
        if total < 1:
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"the licence count must be at least 1, got {total}")
        async with self._resizing:
            previous = self.licences.total
            self.licences.total = total
            deadline = time.monotonic() + timeout_s
            while self.licences.used > total and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.licences.used > total:
                self.licences.total = previous
                raise AigesError(
                    ErrorCode.ELASTIC_LICENCE,
                    f"{self.licences.used} licences were still in use after {int(timeout_s * 1000)} ms, more than "
                    f"{total}; the count stays {previous}",
                )
            if lb_type is not None:
                self.lb_type = lb_type
            log.info("licences resized", previous=previous, licences=total, lb_type=self.lb_type)
            self.changed.set()

    async def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        """AILoad: keep a personalised resource and load it in every worker (and in any that
        starts later); a loaded id is replaced. 10121 past ``[resources]``, 10122 if the wrapper
        cannot load resources, 10903 if it refuses this one (then no worker keeps it)."""
        info = self.info()
        if info is None:
            raise AigesError(ErrorCode.STARTING, "the service is starting: no worker has loaded the wrapper yet")
        if "resources" not in info.capabilities:
            raise AigesError(ErrorCode.RESOURCE_UNSUPPORTED, f"the {info.style}-style wrapper has no wrapperLoadRes")
        await self.pool.load_resource(
            Resource(res_id, [DataItem(i.key, bytes(i.data), i.type, i.status, dict(i.desc)) for i in items])
        )

    async def unload_resource(self, res_id: int) -> None:
        """AIUnLoad: unload a resource from every worker and forget it; 10120 if it is not loaded."""
        await self.pool.unload_resource(res_id)

    async def reload(self, worker: WorkerSettings, drain_timeout_s: float) -> ReloadOutcome:
        """A new generation of workers with these settings (the wrapper and its config read
        afresh): new calls and sessions go to each new worker as soon as it is ready, the old
        workers finish theirs (within ``drain_timeout_s``) and stop; if a new worker fails to
        start, the old ones serve on and the outcome says why."""
        outcome = await self.pool.reload(worker, drain_timeout_s)
        self.changed.set()
        return outcome

    # -- first frames ------------------------------------------------------------------------------------

    async def once(self, context: RequestContext, frame: Frame) -> Output:
        """A one-shot call: it holds a licence while it runs."""
        value = await self._first(context.tag, Once(self.pool.new_id(), context.wire(self.peer), out_of_band(frame)))
        assert not isinstance(value, Session)
        return value

    async def open(self, context: RequestContext, frame: Frame, *, ordered: bool = False) -> Session:
        """A new session, which holds a licence until it ends; ``ordered``: the worker puts its
        frames back in sync_id order."""
        value = await self._first(
            context.tag, Open(self.pool.new_id(), context.wire(self.peer), out_of_band(frame), ordered)
        )
        assert isinstance(value, Session)
        return value

    async def _first(self, tag: str, message: Once | Open) -> Output | Session:
        """A first frame goes to the least-loaded worker, holding a licence."""
        if self.draining:
            raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, "server is draining; retry on another instance")
        destroying = self._destroying.get(tag)
        if destroying is not None:  # the handle's last session is still being destroyed: let it finish
            await asyncio.shield(destroying)
        if tag in self.sessions.open or tag in self._early:
            raise AigesError(ErrorCode.SESSION_REPEAT, f"handle {tag} is already in use by a running call or session")
        self.licences.acquire()
        self._early[tag] = None  # in flight; EarlyOutputs only if a wrapper thread pushes meanwhile
        self.inflight += 1
        call = asyncio.ensure_future(self.pool.call(message, retryable=True))
        try:
            worker, value = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._abandoned, tag))
            raise
        except BaseException:
            self._first_done(tag)
            raise
        self.inflight -= 1
        if self.settings.log_workers:  # the request's debug lines name the worker that ran it
            bind_contextvars(worker=worker.index)
        early = self._early.pop(tag)
        match value:
            case OnceReply(output=output):
                self.licences.release()
                return output
            case Opened(service_id=service_id, outputs=outputs):
                if early is None:
                    return self._register(tag, worker, service_id, outputs, None)
                return self._register(tag, worker, service_id, [*outputs, *early.outputs], early.failure)
        raise AssertionError(f"a first frame was answered with {value!r}")

    def _register(
        self, tag: str, worker: Worker, service_id: str, outputs: list[tuple[Output, bool]], failure: AigesError | None
    ) -> Session:
        session = Session(tag=tag, worker=worker, service_id=service_id)
        self.sessions.add(session)
        worker.sessions += 1
        for output, ended in outputs:
            self._queue_output(session, output, ended)
        session.failure = session.failure or failure
        log.info("session opened", sid=tag, worker=worker.index)
        return session

    def _first_done(self, tag: str) -> None:
        self.inflight -= 1
        self.licences.release()
        self._early.pop(tag, None)

    def _abandoned(self, tag: str, call: asyncio.Future[tuple[Worker, Any]]) -> None:
        """A first frame whose caller went away (cancelled, deadline): the worker still runs it,
        so its licence is held until the worker is done, and a session it opened is destroyed."""
        self._first_done(tag)
        if call.cancelled() or call.exception() is not None:
            return
        worker, value = call.result()
        if isinstance(value, Opened):
            log.info("session abandoned", sid=tag, worker=worker.index)
            self._destroy(tag, worker)

    # -- sessions ----------------------------------------------------------------------------------------

    def get(self, tag: str) -> Session:
        """The open session with this handle: 10008 if unknown, 10101 if it has ended."""
        return self.sessions.get(tag)

    async def write(self, session: Session, frame: Frame) -> None:
        self._check_alive(session)
        session.touch()
        self.inflight += 1
        try:
            await self.pool.call(Write(self.pool.new_id(), session.tag, out_of_band(frame)), worker=session.worker)
        except AigesError as exc:
            self.fail(session, exc)
            self.close(session, reason=f"error {exc.code}")
            raise
        finally:
            self.inflight -= 1

    def finish(self, session: Session) -> None:
        """The client will write no more: the worker reads until the wrapper's output ends."""
        if not session.closed and session.failure is None:
            self._spawn(self._call_quietly(Finish(self.pool.new_id(), session.tag), session.worker))

    async def read(self, session: Session, wait_s: float | None) -> Output | None:
        """The next output batch, waiting at most ``wait_s`` (None: until one comes). The batch
        that ends the output closes the session; a failed session raises its error once, then
        closes."""
        session.touch()
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while True:
            if session.outputs:
                output, ended = session.outputs.popleft()
                session.touch()
                session.pending_bytes -= len(output) if isinstance(output, bytes) else output_size(output)
                if ended:
                    self.close(session)
                elif session.paused and session.pending_bytes <= self.output_budget // 2:
                    session.paused = False
                    self.pool.notify(session.worker, Resume(session.tag))
                return output
            self._check_alive(session)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            session.changed.clear()
            try:
                await asyncio.wait_for(session.changed.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    def close(self, session: Session, destroy: bool = True, reason: str = "") -> None:
        """End a session: wrapperDestroy in its worker, licence back, handle to the released ring."""
        if session.closed:
            return
        session.closed = True
        self.sessions.remove(session)
        self._release(session)
        session.outputs.clear()  # whoever still holds the session object holds no output
        session.pending_bytes = 0
        worker = session.worker
        if destroy and worker.ready:
            self._destroy(session.tag, worker)
        session.notify()
        log.info("session closed", sid=session.tag, worker=worker.index, reason=reason or "done")

    def fail(self, session: Session, error: AigesError) -> None:
        """Mark a session failed: its next read or write raises ``error`` and ends it."""
        if session.failure is None:
            session.failure = error
        session.notify()

    def _release(self, session: Session) -> None:
        if session.holds_licence:
            session.holds_licence = False
            self.licences.release()
            session.worker.sessions -= 1

    def _check_alive(self, session: Session) -> None:
        if session.failure is not None:
            failure = session.failure
            self.close(session, reason=f"error {failure.code}")
            raise failure
        if session.closed:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {session.tag} already ended")

    def _destroy(self, tag: str, worker: Worker) -> None:
        """wrapperDestroy in the worker; until it is done the handle is not given to a new call,
        so the worker never holds two sessions under one handle."""
        task = self._spawn(self._call_quietly(Destroy(self.pool.new_id(), tag), worker))
        self._destroying[tag] = task
        task.add_done_callback(
            lambda done: self._destroying.pop(tag, None) if self._destroying.get(tag) is done else None
        )

    async def _call_quietly(self, message: Finish | Destroy, worker: Worker) -> None:
        """A session call nobody waits for: a failure is logged, not raised."""
        try:
            await self.pool.call(message, worker=worker)
        except AigesError as exc:
            log.warning(
                "session call failed", call=type(message).__name__, sid=message.tag, code=exc.code, error=exc.message
            )

    def _queue_output(self, session: Session, output: Output, ended: bool) -> None:
        """Queue an output batch for the session's reader, within the session's byte budget: past
        it the worker stops reading the wrapper's output for the session until the reader has
        caught up; past ``output_limit`` (output pushed by wrapper threads cannot be paused) the
        session ends with 10111."""
        session.outputs.append((output, ended))
        session.pending_bytes += len(output) if isinstance(output, bytes) else output_size(output)
        session.notify()
        if session.pending_bytes <= self.output_budget:
            return
        if not session.paused:
            session.paused = True
            self.pool.notify(session.worker, Pause(session.tag))
        if session.pending_bytes > self.output_limit:
            error = AigesError(
                ErrorCode.OUTPUT_BACKLOG,
                (
                    f"session {session.tag} ended: {session.pending_bytes} bytes of output were not read "
                    f"(the server holds {self.output_budget} per session, [fc] session_output_kb)"
                ),
            )
            log.warning("session output not read", sid=session.tag, pending=session.pending_bytes)
            self.fail(session, error)
            self.close(session, reason=f"error {error.code}")

    # -- what the pool reports (PoolListener) -------------------------------------------------------------

    def on_output(self, message: SessionOutput) -> None:
        session = self.sessions.open.get(message.tag)
        if session is None:
            if message.tag in self._early:
                self._early_of(message.tag).outputs.append((message.output, message.ended))
            return
        if not session.closed:
            self._queue_output(session, message.output, message.ended)

    def on_output_failed(self, message: SessionFailed) -> None:
        error = AigesError(message.code, message.message)
        session = self.sessions.open.get(message.tag)
        if session is not None:
            self.fail(session, error)
            return
        if message.tag in self._early:
            early = self._early_of(message.tag)
            early.failure = early.failure or error

    def _early_of(self, tag: str) -> EarlyOutputs:
        early = self._early.get(tag)
        if early is None:
            early = self._early[tag] = EarlyOutputs()
        return early

    def on_worker_lost(self, worker: Worker, reason: str) -> None:
        for session in self.sessions.on_worker(worker):
            self._release(session)
            self.fail(
                session,
                AigesError(
                    ErrorCode.WORKER_CRASH, f"worker {worker.index} stopped ({reason}); session {session.tag} is lost"
                ),
            )

    def on_report(self, message: Report) -> None:
        self._reports(message)

    def on_state_changed(self) -> None:
        self.changed.set()

    async def _expire_idle(self) -> None:
        while True:
            await asyncio.sleep(self.settings.expiry_scan_ms / 1000)
            for session in self.sessions.idle(self.session_ttl_s):
                log.info("session expired", sid=session.tag, idle_ms=int(self.session_ttl_s * 1000))
                self.close(session, reason="idle")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def out_of_band(frame: Frame) -> Frame:
    """A frame whose payloads travel beside the message (in the shared-memory ring when large)."""
    if isinstance(frame, Wire):
        if isinstance(frame.data, bytes) and len(frame.data) < ipc.OUT_OF_BAND_MIN:
            return frame
        return Wire(frame.codec, ipc.out_of_band(frame.data))
    items = [DataItem(i.key, ipc.out_of_band(i.data), i.type, i.status, i.desc) for i in frame.items]
    return frame._replace(items=items)


def output_size(output: Any) -> int:
    """The bytes an ``ItemsOutput`` holds."""
    return sum(len(item.data) for item in output.items)
