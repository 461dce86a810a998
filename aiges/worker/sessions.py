"""A worker's streaming sessions: created in the wrapper, written to, read from (after each
write in realtime mode, once the input is done otherwise, and by a poll while output is
pending), paused while the client has too much unread output, destroyed.

The wrapper may push output from its own threads (``deliver``): the outbox lock guards what a
first frame's answer collects meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

from aiges.engine import ipc
from aiges.engine.items import DataItem, DataStatus
from aiges.engine.messages import Frame, Open, Opened, SessionFailed, SessionOutput
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import Plugin
from aiges.protocol.codecs import Decoded
from aiges.schema.validation import Validator
from aiges.worker.decoding import FrameDecoder, decoded_all
from aiges.worker.resources import WorkerResources
from aiges.worker.session_state import GAP_WAIT_S, Sequencer, WorkerSession
from aiges.worker.wrapper import wrapper_call

log = logging.getLogger("aiges.worker")

POLL_INTERVAL_S = 0.05
ENDING = (DataStatus.END, DataStatus.ONCE)


class WorkerSessions:
    def __init__(
        self,
        plugin: Plugin,
        channel: ipc.BlockingChannel,
        decoder: FrameDecoder,
        resources: WorkerResources,
        realtime: bool,
    ) -> None:
        self.plugin = plugin
        self.channel = channel
        self.decoder = decoder
        self.resources = resources
        self.validator = Validator(plugin.fields)
        self.realtime = realtime
        self.reads = "read" in plugin.capabilities
        self.open: dict[str, WorkerSession] = {}
        self.by_handle: dict[str, str] = {}
        self.by_sid: dict[str, str] = {}
        self._outbox_lock = threading.Lock()

    # -- frames ------------------------------------------------------------------------------------

    def begin(self, message: Open) -> Opened:
        """A new session: wrapperCreate, then its first frame's items are written. Output (or an
        output error) produced meanwhile is part of the answer."""
        tag = message.context.tag
        decoded: Decoded = self.decoder.first(message.context, message.frame)
        decoded_all(message.frame)
        res_ids = self.resources.named(decoded.params)
        self.validator.check(decoded.params, decoded.items, inputs=False)
        handle = wrapper_call(ErrorCode.WRAPPER_CREATE, self.plugin.create, tag, decoded.params, res_ids)
        session = WorkerSession(
            tag,
            handle,
            decoded.encoder,
            Sequencer(decoded.sync_id) if message.ordered else None,
            sid=decoded.params.get("sid", tag),
            app_id=decoded.app_id,
        )
        self.open[tag] = session
        self.by_handle[handle] = tag
        self.by_sid[session.sid] = tag
        session.outbox = []
        try:
            self._accept(session, decoded.items, decoded.sync_id)
            with self._outbox_lock:  # wrapper threads may push meanwhile (callbacks)
                outputs, session.outbox = session.outbox, None
            if session.failure is not None:
                raise session.failure
        except BaseException:
            self.destroy(tag)
            raise
        return Opened(decoded.encoder.service_id, outputs)

    def write(self, tag: str, frame: Frame) -> None:
        session = self._session(tag)
        items, sync_id = self.decoder.next(frame)
        decoded_all(frame)
        self._accept(session, items, sync_id)

    def _accept(self, session: WorkerSession, items: list[DataItem], sync_id: int) -> None:
        if session.sequencer is None:
            frames = [items]
        else:
            frames = session.sequencer.push(sync_id, items)
            self._arm_gap(session)
        self._write_frames(session, frames)

    def _arm_gap(self, session: WorkerSession) -> None:
        waiting = session.sequencer is not None and session.sequencer.waiting
        if not waiting:
            session.gap_deadline = None
        elif session.gap_deadline is None:
            session.gap_deadline = time.monotonic() + GAP_WAIT_S

    def _write_frames(self, session: WorkerSession, frames: list[list[DataItem]]) -> None:
        for items in frames:
            if not items:
                continue
            wrapper_call(ErrorCode.WRAPPER_WRITE, self.plugin.write, session.handle, items)
            if any(i.status in ENDING for i in items):
                session.input_done = True
            if self.realtime or session.input_done:
                self.collect(session)

    def finish(self, tag: str) -> None:
        """No more input will come: read until the wrapper's output ends."""
        session = self._session(tag)
        session.input_done = True
        self.collect(session)

    def destroy(self, tag: str) -> None:
        session = self.open.pop(tag, None)
        if session is None:
            return
        if self.by_handle.get(session.handle) == tag:  # a wrapper may have given the handle out again
            del self.by_handle[session.handle]
        if self.by_sid.get(session.sid) == tag:
            del self.by_sid[session.sid]
        self.plugin.destroy(session.handle)

    # -- output ------------------------------------------------------------------------------------

    def collect(self, session: WorkerSession) -> None:
        """Read whatever the plugin has ready for the session and push it to the server (a plugin
        whose results come only through its host is never read, nor a paused session)."""
        if session.output_done or not self.reads or session.paused:
            return
        try:
            items = wrapper_call(ErrorCode.WRAPPER_READ, self.plugin.read, session.handle)
        except AigesError as exc:
            self._fail(session, exc.code, exc.message)
            return
        self.push(session, items)

    def push(self, session: WorkerSession, items: list[DataItem]) -> None:
        if not items or session.output_done:
            return
        try:
            output, ended = session.encoder.batch(items)
        except AigesError as exc:
            self._fail(session, exc.code, exc.message)
            return
        session.output_done = ended
        with self._outbox_lock:
            if session.outbox is not None:
                session.outbox.append((output, ended))
                return
        self.channel.send(SessionOutput(session.tag, output, ended))

    def _fail(self, session: WorkerSession, code: int, message: str) -> None:
        """The session's output failed: while its first frame is handled, the first call itself
        fails with the error; later, the server is told."""
        session.output_done = True
        with self._outbox_lock:
            if session.outbox is not None:
                session.failure = session.failure or AigesError(code, message)
                return
        self.channel.send(SessionFailed(session.tag, code, message))

    def flow(self, tag: str, paused: bool) -> None:
        """The server's back-pressure: paused while the session's client has too much unread
        output (its wrapper's output is not read meanwhile), resumed once it has caught up."""
        session = self.open.get(tag)
        if session is None:
            return
        session.paused = paused
        if not paused and (self.realtime or session.input_done):
            self.collect(session)

    # -- timers ------------------------------------------------------------------------------------

    def _polled(self, session: WorkerSession) -> bool:
        return self.reads and session.input_done and not session.output_done and not session.paused

    def next_timeout(self) -> float | None:
        """How long the serve loop may wait for the server before a timer is due (None: no timer)."""
        timeout = None
        now = time.monotonic()
        for session in self.open.values():
            if self._polled(session):
                timeout = POLL_INTERVAL_S if timeout is None else min(timeout, POLL_INTERVAL_S)
            if session.gap_deadline is not None:
                left = max(session.gap_deadline - now, 0.0)
                timeout = left if timeout is None else min(timeout, left)
        return timeout

    def run_timers(self) -> None:
        now = time.monotonic()
        for session in list(self.open.values()):
            if session.gap_deadline is not None and session.gap_deadline <= now:
                log.warning("session %s: input gap skipped", session.tag)
                try:
                    assert session.sequencer is not None
                    self._write_frames(session, session.sequencer.skip_gap())
                except AigesError as exc:
                    self._fail(session, exc.code, exc.message)
                self._arm_gap(session)
            elif self._polled(session):
                self.collect(session)

    # -- what the wrapper's callbacks name ---------------------------------------------------------

    def _session(self, tag: str) -> WorkerSession:
        session = self.open.get(tag)
        if session is None:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag} on this worker")
        return session

    def named(self, name: str) -> WorkerSession | None:
        """The session a callback names: by our handle, the wrapper's handle, or the request's sid."""
        tag = name if name in self.open else self.by_handle.get(name) or self.by_sid.get(name, "")
        return self.open.get(tag)

    def deliver(self, name: str, items: list[DataItem]) -> int:
        """Output a wrapper pushes for the session ``name`` names: 0, or -1 if there is none."""
        session = self.named(name)
        if session is None:
            return -1
        self.push(session, items)
        return 0

    def deliver_error(self, name: str, code: int, message: str) -> int:
        session = self.named(name)
        if session is None:
            return -1
        self._fail(session, code, message)
        return 0
