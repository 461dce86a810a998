"""The engine: what every front calls. It owns the licences, the sessions and the worker pool.

    once(request)                         -> result items
    open(tag, params, first_seq)          -> Session
    write(session, items, seq)            -> None (outputs arrive in the session's queue)
    read(session, wait_s)                 -> next output batch, or None after wait_s
    finish(session) / close(session)
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from aiges.engine.licences import Licences
from aiges.engine.pool import WorkerHandle, WorkerPool
from aiges.engine.sessions import GAP_WAIT_S, Sequencer, Session, SessionTable, ends_output
from aiges.engine.types import DataItem, Request
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.engine")


class Engine:
    def __init__(self, pool: WorkerPool, licences: Licences, session_ttl_ms: int = 15000,
                 expiry_scan_ms: int = 1000) -> None:
        self.pool = pool
        self.licences = licences
        self.sessions = SessionTable()
        self.session_ttl_s = session_ttl_ms / 1000
        self.expiry_scan_s = expiry_scan_ms / 1000
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

    async def once(self, request: Request) -> list[DataItem]:
        """Run a one-shot call on the least-loaded worker, holding one licence meanwhile."""
        with self.licences.hold():
            return await self.pool.call("once", request.tag, request.params, request.items, retryable=True)

    async def open(
        self, tag: str, params: dict[str, str], first_seq: int | None = None, front: object = None
    ) -> Session:
        """Create a session on the least-loaded worker (wrapperCreate); it holds a licence until closed."""
        if tag in self.sessions.open:
            raise AigesError(ErrorCode.SESSION_REPEAT, f"session {tag} is already open")
        self.licences.acquire()
        try:
            worker = await self.pool.pick()
        except BaseException:
            self.licences.release()
            raise
        session = Session(tag=tag, worker=worker, generation=worker.generation, params=params, front=front)
        if first_seq is not None:
            session.sequencer = Sequencer(first_seq)
        self.sessions.add(session)
        worker.sessions += 1
        try:
            session.plugin_handle = await self.pool.call("create", tag, params, worker=worker)
        except BaseException:
            self.close(session, destroy=False)
            raise
        log.info("session opened", sid=tag, worker=worker.index)
        return session

    def get(self, tag: str) -> Session:
        """The open session with this handle: 10008 if unknown, 10101 if it has ended."""
        return self.sessions.get(tag)

    async def write(self, session: Session, items: list[DataItem], seq: int | None = None) -> None:
        """Write a frame; with ``seq``, frames are written in sequence order."""
        self._check_alive(session)
        session.touch()
        if session.sequencer is None or seq is None:
            frames = [items]
        else:
            frames = session.sequencer.push(seq, items)
            self._arm_gap_timer(session)
        for frame in frames:
            if frame:
                await self._write_frame(session, frame)

    async def _write_frame(self, session: Session, items: list[DataItem]) -> None:
        try:
            await self.pool.call("write", session.tag, items, worker=session.worker)
        except AigesError as exc:
            self.fail(session, exc)
            self.close(session)
            raise

    def _arm_gap_timer(self, session: Session) -> None:
        if session.gap_timer is not None:
            session.gap_timer.cancel()
            session.gap_timer = None
        if session.sequencer.waiting:
            session.gap_timer = asyncio.get_running_loop().call_later(GAP_WAIT_S, self._skip_gap, session)

    def _skip_gap(self, session: Session) -> None:
        session.gap_timer = None
        if session.closed:
            return
        frames = session.sequencer.skip_gap()
        log.warning("input gap skipped", sid=session.tag, resumed_at=session.sequencer.next - len(frames))
        self._spawn(self._write_frames(session, frames))

    async def _write_frames(self, session: Session, frames: list[list[DataItem]]) -> None:
        for frame in frames:
            if frame and not session.closed:
                with contextlib.suppress(AigesError):
                    await self._write_frame(session, frame)

    def finish(self, session: Session) -> None:
        """The client will write no more: the worker reads until the wrapper's output ends."""
        if not session.closed and session.failure is None:
            self._spawn(self._finish(session))

    async def _finish(self, session: Session) -> None:
        with contextlib.suppress(AigesError):
            await self.pool.call("finish", session.tag, worker=session.worker)

    async def read(self, session: Session, wait_s: float | None) -> list[DataItem] | None:
        """The next output batch, waiting at most ``wait_s`` (None: until one comes). A batch that
        ends the output closes the session; a failed session raises its error once, then closes."""
        session.touch()
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while True:
            if session.outputs:
                batch = session.outputs.popleft()
                session.touch()
                if ends_output(batch):
                    self.close(session)
                return batch
            if session.failure is not None:
                failure = session.failure
                self.close(session)
                raise failure
            if session.closed:
                raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {session.tag} already ended")
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
        if session.gap_timer is not None:
            session.gap_timer.cancel()
        self.sessions.remove(session)
        self._release(session)
        worker: WorkerHandle = session.worker
        if destroy and worker.generation == session.generation and worker.ready:
            self._spawn(self._destroy(session))
        session.notify()
        log.info("session closed", sid=session.tag, worker=worker.index, reason=reason or "done")

    def _release(self, session: Session) -> None:
        if session.holds_licence:
            session.holds_licence = False
            self.licences.release()
            session.worker.sessions -= 1

    async def _destroy(self, session: Session) -> None:
        try:
            await self.pool.call("destroy", session.tag, worker=session.worker)
        except AigesError as exc:
            log.warning("session destroy failed", sid=session.tag, code=exc.code, error=exc.message)

    def _check_alive(self, session: Session) -> None:
        if session.failure is not None:
            failure = session.failure
            self.close(session)
            raise failure
        if session.closed:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {session.tag} already ended")

    def fail(self, session: Session, error: AigesError) -> None:
        """Mark a session failed: its next read or write raises ``error`` and ends it."""
        if session.failure is None:
            session.failure = error
        session.notify()

    def _on_output(self, tag: str, items: list[DataItem]) -> None:
        session = self.sessions.open.get(tag)
        if session is None or session.closed:
            return
        session.outputs.append(items)
        if ends_output(items):
            session.output_ended = True
        session.notify()

    def _on_output_error(self, tag: str, code: int, message: str) -> None:
        session = self.sessions.open.get(tag)
        if session is not None:
            self.fail(session, AigesError(code, message))

    def _on_worker_lost(self, worker: WorkerHandle, reason: str) -> None:
        index = worker.index
        for session in self.sessions.on_worker(worker, worker.generation):
            self._release(session)
            self.fail(session, AigesError(
                ErrorCode.WORKER_CRASH, f"worker {index} stopped ({reason}); session {session.tag} is lost"
            ))

    async def _expire_idle(self) -> None:
        while True:
            await asyncio.sleep(self.expiry_scan_s)
            for session in self.sessions.idle(self.session_ttl_s):
                log.info("session expired", sid=session.tag, idle_ms=int(self.session_ttl_s * 1000))
                self.close(session, reason="idle")

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
