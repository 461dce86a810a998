"""The engine: what every front calls. It admits calls and sessions (``admission``), keeps the
sessions, and runs everything on its backend (the worker pool); nothing above it touches the pool.

    once(context, frame)        -> the one-shot call's output
    open(context, frame)        -> a new Session
    session(tag, caller)        -> the open session with that handle, if it is the caller's
    write(session, frame)       -> None (outputs arrive in the session's queue)
    read(session, wait_s)       -> the next output batch, or None after wait_s
    finish(session) / close(session)
    status() / drain(timeout_s)
    resize_licences(total, timeout_s)          AILBType: the licence count, at run time
    load_resource(res_id, items) / unload_resource(res_id)   AILoad / AIUnLoad, in every worker
    reload(worker_settings, drain_timeout_s)   a new generation of workers, without dropping a call

Every first frame carries its ``RequestContext`` (who calls, the trace, the deadline, the
cancellation) and passes the one admission point before it reaches a worker; what admission
gives it is released on the one path that ends the call or the session.

A frame is a ``messages.Wire`` (a client's protocol bytes, decoded in the worker by that front's
codec) or ``messages.Items`` (a call its front decoded); outputs come back in the frame's form
(encoded bytes, or ``ItemsOutput``). The engine never looks inside a payload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars

from aiges.engine.admission import Admission, Ticket
from aiges.engine.backend import Estimate, WorkerRef
from aiges.engine.context import Caller, RequestContext
from aiges.engine.items import DataItem, WorkerInfo
from aiges.engine.messages import (
    Destroy,
    Finish,
    Frame,
    Once,
    Open,
    Opened,
    Output,
    Pause,
    Report,
    Resume,
    SessionFailed,
    SessionOutput,
    WorkerSettings,
    Write,
)
from aiges.engine.pool import Launcher, PoolSettings, ReloadOutcome, WorkerPool, WorkerStatus
from aiges.engine.resources import Resource
from aiges.engine.sessions import Flow, OutputQueue, Session, SessionState, SessionTable
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
    default_deadline_ms: int = 0
    """A call's deadline when its caller gives none (``[fc] deadline_ms``; 0: none)."""
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


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        reports: Callable[[Report], None] = lambda report: None,
        launcher: Launcher | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``reports`` takes what wrappers report through their callbacks (metering, metrics,
        load-balancer labels, trace entries); ``launcher`` starts workers (processes, by default);
        ``admission`` counts the licences and the apps' limits (in this process, by default)."""
        self.settings = settings
        self.peer = settings.pool.worker.peer_addr
        self._reports = reports
        self.pool = WorkerPool(settings.pool, self, launcher)
        self.admission = admission or Admission.local(settings.licences)
        self.admission.capacity = self
        self.sessions = SessionTable()
        self.session_ttl_s = settings.session_ttl_ms / 1000
        self.output_budget = settings.session_output_bytes
        self.output_limit = OUTPUT_LIMIT_FACTOR * settings.session_output_bytes
        self.changed = asyncio.Event()
        """Set when the workers' state changes (health follows it)."""
        self.inflight = 0
        self._waiting: dict[int, Ticket] = {}
        """The tickets of first frames in flight, by call id (a refusal of higher priority frees one)."""
        self._running: set[str] = set()
        """Handles of one-shot calls running now (a session's is in ``sessions`` from its first frame)."""
        self._destroying: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry: asyncio.Task[None] | None = None
        self._resizing = asyncio.Lock()
        self.lb_type = ""
        """The load-balancer type AILBType set last (``lbType``): "type" in the registry value."""

    @property
    def draining(self) -> bool:
        return self.admission.draining

    # -- life --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers (raises WorkerInitError), then expire idle sessions."""
        await self.pool.start()
        self._expiry = asyncio.create_task(self._expire_idle())

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new calls and sessions (10110, so clients retry elsewhere) and wait until the
        running ones are done; False if some still run after ``timeout_s``."""
        self.admission.draining = True
        deadline = time.monotonic() + timeout_s
        while not self.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.idle()

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for session in list(self.sessions.open.values()):
            self.close(session, destroy=False, reason="server stopping")
        await self.pool.stop(timeout_s)

    def idle(self) -> bool:
        """No call running and no session open: nothing a drain still waits for."""
        return self.inflight == 0 and not self.sessions.open

    def status(self) -> EngineStatus:
        return EngineStatus(
            licences_total=self.admission.total,
            licences_used=self.admission.used,
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
            admission = self.admission
            previous = admission.total
            admission.licences.resize_licences(total)
            deadline = time.monotonic() + timeout_s
            while admission.used > total and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if admission.used > total:
                used = admission.used
                admission.licences.resize_licences(previous)
                raise AigesError(
                    ErrorCode.ELASTIC_LICENCE,
                    f"{used} licences were still in use after {int(timeout_s * 1000)} ms, more than "
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

    # -- one-shot calls ----------------------------------------------------------------------------------

    async def once(self, context: RequestContext, frame: Frame) -> Output:
        """A one-shot call: admitted, it holds its ticket while it runs. A caller that goes away
        (its task cancelled) frees the ticket at once; its call never reaches the wrapper if no
        worker has it yet, and the wrapper is told if one is running it."""
        tag = context.tag
        self._default_deadline(context)
        ticket = self.admission.admit(context, session=False)
        try:
            await self._claim(tag)
        except BaseException:
            ticket.release()
            raise
        self._running.add(tag)
        self.inflight += 1
        message = Once(self.pool.new_id(), context.wire(self.peer), frame)
        self._waiting[message.call_id] = ticket
        done = partial(self._once_done, tag, ticket, message.call_id)
        call = asyncio.ensure_future(self.pool.once(message, context.priority))
        try:
            worker, reply = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._abandon(context, message.call_id, ticket, call, done)
            raise
        except BaseException:
            done()
            raise
        done()
        if self.settings.log_workers:  # the request's debug lines name the worker that ran it
            bind_contextvars(worker=worker.index)
        return reply.output

    def _once_done(self, tag: str, ticket: Ticket, call_id: int, *_: object) -> None:
        self.inflight -= 1
        self._running.discard(tag)
        self._waiting.pop(call_id, None)
        ticket.release()

    def _abandon(
        self,
        context: RequestContext,
        call_id: int,
        ticket: Ticket,
        call: asyncio.Future[Any],
        done: Callable[..., None],
    ) -> None:
        """The caller of a first frame went away: its ticket is released now; a call no worker
        has yet is withdrawn, one a worker has is left to end there (``done`` then)."""
        context.cancellation.cancel("the caller went away")
        ticket.release()
        withdrawn = self.pool.withdraw(call_id)
        if not withdrawn:
            self.pool.cancel(call_id)  # a worker has it: it does not start it, or the wrapper is told

        def ended(finished: asyncio.Future[Any]) -> None:
            if not finished.cancelled():
                finished.exception()  # nobody waits for its outcome: retrieved, not logged as lost
            done(finished)

        call.add_done_callback(ended)
        if withdrawn:
            log.info("call withdrawn", sid=context.tag, reason="the caller went away before a worker had it")

    # -- what admission asks (Capacity) ------------------------------------------------------------------

    def estimate(self, priority: int) -> Estimate | None:
        return self.pool.estimate(priority)

    def make_room(self, priority: int) -> bool:
        """Refuse the least urgent first frame waiting for a worker, if less urgent than
        ``priority``: its licence is free at once."""
        call_id = self.pool.evict_below(priority)
        if call_id is None:
            return False
        ticket = self._waiting.get(call_id)
        if ticket is not None:
            ticket.release()
        return True

    def _default_deadline(self, context: RequestContext) -> None:
        if context.deadline is None and self.settings.default_deadline_ms:
            context.deadline = time.monotonic() + self.settings.default_deadline_ms / 1000

    async def _claim(self, tag: str) -> None:
        """A first frame's handle must be free: 10105 while a call or a session runs on it; one
        whose last session is still being destroyed waits for that (so the worker never holds two
        sessions under one handle)."""
        destroying = self._destroying.get(tag)
        if destroying is not None:
            await asyncio.shield(destroying)
        if tag in self._running or self.sessions.find(tag) is not None:
            raise AigesError(ErrorCode.SESSION_REPEAT, f"handle {tag} is already in use by a running call or session")

    # -- sessions ----------------------------------------------------------------------------------------

    async def open(self, context: RequestContext, frame: Frame, *, ordered: bool = False) -> Session:
        """A new session, admitted, holding its ticket until it ends; ``ordered``: the worker puts
        its frames back in sync_id order. Output a wrapper thread pushes while the first frame
        runs is kept, after the first frame's own."""
        self._default_deadline(context)
        ticket = self.admission.admit(context, session=True)
        try:
            await self._claim(context.tag)
        except BaseException:
            ticket.release()
            raise
        session = Session(context, ticket, OutputQueue(self.output_budget, self.output_limit))
        self.sessions.add(session)
        self.inflight += 1
        message = Open(self.pool.new_id(), context.wire(self.peer), frame, ordered)
        self._waiting[message.call_id] = ticket
        call = asyncio.ensure_future(self.pool.open(message, context.priority))
        try:
            worker, opened = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._abandon(context, message.call_id, ticket, call, partial(self._open_abandoned, session))
            raise
        except BaseException:
            self._open_failed(session)
            raise
        finally:
            self._waiting.pop(message.call_id, None)
        self.inflight -= 1
        self._attach(session, worker, opened)
        if session.closed:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {session.tag} ended while it opened")
        if self.settings.log_workers:  # the request's debug lines name the worker that ran it
            bind_contextvars(worker=worker.index)
        return session

    def _attach(self, session: Session, worker: WorkerRef, opened: Opened) -> None:
        if session.closed:  # it ended while it opened (the server stopping, its output overflowing)
            self._release_worker(session.tag, worker, destroy=True)
            return
        session.outputs.push_front(opened.outputs)
        session.attach(worker, opened.service_id)
        if session.outputs.pending_bytes > self.output_budget and not session.outputs.paused:
            session.outputs.paused = True
            self.pool.notify(worker, Pause(session.tag))
        log.info("session opened", sid=session.tag, worker=worker.index)

    def _open_failed(self, session: Session) -> None:
        self.inflight -= 1
        self.sessions.forget(session)
        session.close()

    def _open_abandoned(self, session: Session, call: asyncio.Future[tuple[WorkerRef, Opened]]) -> None:
        """A first frame whose caller went away: the session it opened is destroyed."""
        if call.cancelled() or call.exception() is not None:
            self._open_failed(session)
            return
        self.inflight -= 1
        worker, opened = call.result()
        self._attach(session, worker, opened)
        self.close(session, reason="abandoned")

    def session(self, tag: str, caller: Caller | None = None) -> Session:
        """The session with this handle, if ``caller`` opened it: 10008 for none (or another's),
        10101 if it has ended."""
        return self.sessions.get(tag, caller)

    def get(self, tag: str) -> Session:
        """The session with this handle, whoever opened it (the server's own tools)."""
        return self.sessions.get(tag)

    async def write(self, session: Session, frame: Frame) -> None:
        self._check_alive(session)
        session.touch()
        worker = session.worker
        assert worker is not None
        self.inflight += 1
        try:
            await self.pool.write(worker, Write(self.pool.new_id(), session.tag, frame))
        except asyncio.CancelledError:  # its client gave up on the frame: the session ends, its licence back now
            self.close(session, reason="client gone")
            raise
        except AigesError as exc:
            session.fail(exc)
            self.close(session, reason=f"error {exc.code}")
            raise
        finally:
            self.inflight -= 1

    def finish(self, session: Session) -> None:
        """The client will write no more: the worker reads until the wrapper's output ends."""
        if session.state is SessionState.OPEN and session.worker is not None:
            self._spawn(
                self._quietly(self.pool.finish(session.worker, Finish(self.pool.new_id(), session.tag)), session)
            )

    async def read(self, session: Session, wait_s: float | None) -> Output | None:
        """The next output batch, waiting at most ``wait_s`` (None: until one comes). The batch
        that ends the output closes the session; a failed session raises its error once, then
        closes."""
        session.touch()
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while True:
            if session.outputs:
                output, ended, flow = session.outputs.pop()
                session.touch()
                if ended:
                    self.close(session)
                elif flow is Flow.RESUME and session.worker is not None:
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
        """End a session: its ticket back, its handle to the released ring, and wrapperDestroy in
        its worker (or, with its worker gone, only detached from it)."""
        was_open = session.state is not SessionState.OPENING
        if not session.close():
            return
        self.sessions.remove(session)
        worker = session.worker
        if worker is None:  # closed while opening: the open's answer destroys it (``_attach``)
            return
        self._release_worker(session.tag, worker, destroy)
        if was_open:
            log.info("session closed", sid=session.tag, worker=worker.index, reason=reason or "done")

    def fail(self, session: Session, error: AigesError) -> None:
        """Mark a session failed: its next read or write raises ``error`` and ends it."""
        session.fail(error)

    def _check_alive(self, session: Session) -> None:
        try:
            session.check_alive()
        except AigesError as exc:
            self.close(session, reason=f"error {exc.code}")
            raise

    def _release_worker(self, tag: str, worker: WorkerRef, destroy: bool) -> None:
        """A session's worker no longer holds it: wrapperDestroy there, or (its worker gone, or
        the server stopping) only detached from it."""
        if destroy and worker.ready:
            self._destroy(tag, worker)
        else:
            self.pool.detach(worker)

    def _destroy(self, tag: str, worker: WorkerRef) -> None:
        """wrapperDestroy in the worker; until it is done the handle is not given to a new call,
        so the worker never holds two sessions under one handle."""
        task = self._spawn(self._quietly(self.pool.destroy(worker, Destroy(self.pool.new_id(), tag)), None, tag))
        self._destroying[tag] = task
        task.add_done_callback(
            lambda done: self._destroying.pop(tag, None) if self._destroying.get(tag) is done else None
        )

    @staticmethod
    async def _quietly(call: Coroutine[Any, Any, None], session: Session | None, tag: str = "") -> None:
        """A session call nobody waits for: a failure fails the session, or is logged."""
        try:
            await call
        except AigesError as exc:
            if session is not None:
                session.fail(exc)
            else:
                log.warning("session call failed", sid=tag, code=exc.code, error=exc.message)

    def _queue_output(self, session: Session, output: Output, ended: bool) -> None:
        """Queue an output batch for the session's reader, within the session's byte budget: past
        it the worker stops reading the wrapper's output for the session until the reader has
        caught up; past ``output_limit`` (output pushed by wrapper threads cannot be paused) the
        session ends with 10111."""
        flow = session.outputs.push(output, ended)
        session.notify()
        if flow is Flow.PAUSE and session.worker is not None:
            self.pool.notify(session.worker, Pause(session.tag))
        elif flow is Flow.OVERFLOW:
            error = AigesError(
                ErrorCode.OUTPUT_BACKLOG,
                (
                    f"session {session.tag} ended: {session.pending_bytes} bytes of output were not read "
                    f"(the server holds {self.output_budget} per session, [fc] session_output_kb)"
                ),
            )
            log.warning("session output not read", sid=session.tag, pending=session.pending_bytes)
            session.fail(error)
            self.close(session, reason=f"error {error.code}")

    # -- what the pool reports (PoolListener) -------------------------------------------------------------

    def on_output(self, message: SessionOutput) -> None:
        session = self.sessions.find(message.tag)
        if session is not None and not session.closed:
            self._queue_output(session, message.output, message.ended)

    def on_output_failed(self, message: SessionFailed) -> None:
        session = self.sessions.find(message.tag)
        if session is not None:
            session.fail(AigesError(message.code, message.message))

    def on_worker_lost(self, worker: WorkerRef, reason: str) -> None:
        for session in self.sessions.on_worker(worker):
            session.ticket.release()  # its licence is free at once; the session ends when next used
            session.fail(
                AigesError(
                    ErrorCode.WORKER_CRASH, f"worker {worker.index} stopped ({reason}); session {session.tag} is lost"
                )
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
