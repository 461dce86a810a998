"""The engine: what every front calls. It owns the licences, the sessions and the worker pool.

Fronts hand it raw protocol frames and get back encoded replies; the workers decode and encode
(see ``aiges.protocol.codec``), so the engine never looks inside a payload.

    first(tag, frame, envelope)     -> encoded one-shot reply, or a new Session
    write(session, frame)           -> None (outputs arrive in the session's queue)
    read(session, wait_s)           -> next encoded output batch, or None after wait_s
    finish(session) / close(session)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field

import structlog

from aiges.engine.ipc import out_of_band
from aiges.engine.licences import Licences
from aiges.engine.pool import WorkerHandle, WorkerPool
from aiges.engine.sessions import Session, SessionTable
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.engine")

OUTPUT_LIMIT_FACTOR = 4
"""A session's unread output may pass its budget while the worker learns to pause, or when the
wrapper pushes through callbacks; past this many budgets the session ends."""


@dataclass(slots=True)
class FirstReply:
    """What a first frame produced: a one-shot ``output``, or an open ``session``."""

    output: bytes | None = None
    session: Session | None = None
    worker: int = -1


@dataclass(slots=True)
class EarlyOutputs:
    """What a session's wrapper threads produced before its first frame's reply reached the
    engine: kept, and handed to the session when it is registered."""

    outputs: list[tuple[bytes, bool]] = field(default_factory=list)
    failure: AigesError | None = None


class Engine:
    def __init__(self, pool: WorkerPool, licences: Licences, session_ttl_ms: int = 15000,
                 expiry_scan_ms: int = 1000, session_output_bytes: int = 4 << 20) -> None:
        self.pool = pool
        self.output_budget = session_output_bytes
        self.output_limit = OUTPUT_LIMIT_FACTOR * session_output_bytes
        self.licences = licences
        self.sessions = SessionTable()
        self.session_ttl_s = session_ttl_ms / 1000
        self.expiry_scan_s = expiry_scan_ms / 1000
        self._early: dict[str, EarlyOutputs] = {}
        """First frames in flight, by handle (until their reply is handled)."""
        self._destroying: dict[str, asyncio.Task] = {}
        self.inflight = 0
        self.draining = False
        self._tasks: set[asyncio.Task] = set()
        self._expiry: asyncio.Task | None = None
        pool.on_output = self._on_output
        pool.on_output_error = self._on_output_error
        pool.on_worker_lost = self._on_worker_lost

    def start(self) -> None:
        self._expiry = asyncio.create_task(self._expire_idle())

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for session in list(self.sessions.open.values()):
            self.close(session, destroy=False)

    async def first(self, tag: str, frame: bytes, envelope: str, *, ordered: bool = True,
                    session_only: bool = False, trace: str = "") -> FirstReply:
        """A first frame goes to the least-loaded worker, holding a licence: a one-shot call
        returns its encoded reply; a stream frame opens a session that keeps the licence."""
        if self.draining:
            raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, "server is draining; retry on another instance")
        destroying = self._destroying.get(tag)
        if destroying is not None:  # the handle's last session is still being destroyed: let it finish
            await asyncio.shield(destroying)
        if tag in self.sessions.open or tag in self._early:
            raise AigesError(ErrorCode.SESSION_REPEAT, f"handle {tag} is already in use by a running call or session")
        self.licences.acquire()
        self._early[tag] = EarlyOutputs()
        self.inflight += 1
        call = asyncio.ensure_future(self.pool.call(
            "first", tag, out_of_band(frame), envelope, ordered, session_only, trace,
            retryable=True, with_worker=True,
        ))
        try:
            worker, reply = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._abandoned, tag))
            raise
        except BaseException:
            self._first_done(tag)
            raise
        self.inflight -= 1
        early = self._early.pop(tag)
        if reply[0] == "once":
            self.licences.release()
            return FirstReply(output=reply[1], worker=worker.index)
        _, service_id, outputs = reply
        session = Session(tag=tag, worker=worker, generation=worker.generation, service_id=service_id,
                          envelope=envelope)
        self.sessions.add(session)
        for output, ended in (*outputs, *early.outputs):
            self._queue_output(session, output, ended)
        session.failure = session.failure or early.failure
        worker.sessions += 1
        log.info("session opened", sid=tag, worker=worker.index)
        return FirstReply(session=session, worker=worker.index)

    def _first_done(self, tag: str) -> None:
        self.inflight -= 1
        self.licences.release()
        self._early.pop(tag, None)

    def _abandoned(self, tag: str, call: asyncio.Future) -> None:
        """A first frame whose caller went away (cancelled, deadline): the worker still runs it,
        so its licence is held until the worker is done, and a session it opened is destroyed."""
        self._first_done(tag)
        if call.cancelled() or call.exception() is not None:
            return
        worker, reply = call.result()
        if reply[0] != "once":
            log.info("session abandoned", sid=tag, worker=worker.index)
            self._destroy(tag, worker)

    async def _call_quietly(self, kind: str, tag: str, worker: WorkerHandle) -> None:
        """A session call nobody waits for: a failure is logged, not raised."""
        try:
            await self.pool.call(kind, tag, worker=worker)
        except AigesError as exc:
            log.warning("session call failed", call=kind, sid=tag, code=exc.code, error=exc.message)

    def get(self, tag: str) -> Session:
        """The open session with this handle: 10008 if unknown, 10101 if it has ended."""
        return self.sessions.get(tag)

    async def write(self, session: Session, frame: bytes) -> None:
        self._check_alive(session)
        session.touch()
        self.inflight += 1
        try:
            await self.pool.call("write", session.tag, out_of_band(frame), worker=session.worker)
        except AigesError as exc:
            self.fail(session, exc)
            self.close(session, reason=f"error {exc.code}")
            raise
        finally:
            self.inflight -= 1

    def idle(self) -> bool:
        """No call running and no session open: nothing a drain still waits for."""
        return self.inflight == 0 and not self.sessions.open

    def finish(self, session: Session) -> None:
        """The client will write no more: the worker reads until the wrapper's output ends."""
        if not session.closed and session.failure is None:
            self._spawn(self._finish(session))

    async def _finish(self, session: Session) -> None:
        with contextlib.suppress(AigesError):
            await self.pool.call("finish", session.tag, worker=session.worker)

    async def read(self, session: Session, wait_s: float | None) -> bytes | None:
        """The next encoded output batch, waiting at most ``wait_s`` (None: until one comes). The
        batch that ends the output closes the session; a failed session raises its error once,
        then closes."""
        session.touch()
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while True:
            if session.outputs:
                output, ended = session.outputs.popleft()
                session.touch()
                session.pending_bytes -= len(output)
                if ended:
                    self.close(session)
                elif session.paused and session.pending_bytes <= self.output_budget // 2:
                    session.paused = False
                    self.pool.notify(session.worker, "resume", session.tag)
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
        worker: WorkerHandle = session.worker
        if destroy and worker.generation == session.generation and worker.ready:
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

    def _on_output(self, tag: str, output: bytes, ended: bool) -> None:
        session = self.sessions.open.get(tag)
        if session is None:
            early = self._early.get(tag)
            if early is not None:
                early.outputs.append((output, ended))
            return
        if not session.closed:
            self._queue_output(session, output, ended)

    def _queue_output(self, session: Session, output: bytes, ended: bool) -> None:
        """Queue an output batch for the session's reader, within the session's byte budget: past
        it the worker stops reading the wrapper's output for the session until the reader has
        caught up; past ``output_limit`` (output pushed by wrapper threads cannot be paused) the
        session ends with 10111."""
        session.outputs.append((output, ended))
        session.pending_bytes += len(output)
        session.notify()
        if session.pending_bytes <= self.output_budget:
            return
        if not session.paused:
            session.paused = True
            self.pool.notify(session.worker, "pause", session.tag)
        if session.pending_bytes > self.output_limit:
            error = AigesError(ErrorCode.OUTPUT_BACKLOG, (
                f"session {session.tag} ended: {session.pending_bytes} bytes of output were not read "
                f"(the server holds {self.output_budget} per session, [fc] session_output_kb)"))
            log.warning("session output not read", sid=session.tag, pending=session.pending_bytes)
            self.fail(session, error)
            self.close(session, reason=f"error {error.code}")

    def _on_output_error(self, tag: str, code: int, message: str) -> None:
        session = self.sessions.open.get(tag)
        if session is not None:
            self.fail(session, AigesError(code, message))
            return
        early = self._early.get(tag)
        if early is not None and early.failure is None:
            early.failure = AigesError(code, message)

    def _on_worker_lost(self, worker: WorkerHandle, reason: str) -> None:
        for session in self.sessions.on_worker(worker, worker.generation):
            self._release(session)
            self.fail(session, AigesError(
                ErrorCode.WORKER_CRASH, f"worker {worker.index} stopped ({reason}); session {session.tag} is lost"
            ))

    async def _expire_idle(self) -> None:
        while True:
            await asyncio.sleep(self.expiry_scan_s)
            for session in self.sessions.idle(self.session_ttl_s):
                log.info("session expired", sid=session.tag, idle_ms=int(self.session_ttl_s * 1000))
                self.close(session, reason="idle")

    def _destroy(self, tag: str, worker: WorkerHandle) -> None:
        """wrapperDestroy in the worker; until it is done the handle is not given to a new call,
        so the worker never holds two sessions under one handle."""
        task = self._spawn(self._call_quietly("destroy", tag, worker))
        self._destroying[tag] = task
        task.add_done_callback(lambda done: self._destroying.pop(tag, None) if self._destroying.get(tag) is done
                               else None)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
