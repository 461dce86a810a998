"""The worker process: import the plugin, init it, serve calls from the server, fini.

Started by the pool as ``python -m aiges.worker --fd N --worker-id K`` with
``CUDA_VISIBLE_DEVICES`` already in its environment, so the plugin sees only its own GPU (as
device 0) from its first import on.

The worker decodes the raw protocol frames it is sent, runs the wrapper, and encodes the outputs
(``aiges.protocol.codec``); it owns its sessions' wrapper handles, output contexts and input
reorder buffers. Calls run one at a time, in the order they arrive; the server relies on that
order for its exec-time watchdog. Every reply carries the worker's timestamps
(``time.monotonic``, one clock for all processes on the host): when it was last free, when it
read the call, when the wrapper started and finished. The server computes the per-leg latencies
from them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any

from aiges.engine import ipc
from aiges.engine.shm import ShmRing
from aiges.engine.types import DataItem, DataStatus, WorkerInfo
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.base import Plugin, PluginLoadError
from aiges.plugins.loader import load_plugin, resolve_wrapper_path
from aiges.protocol.codec import V2Codec
from aiges.schema import Validator
from aiges.worker.host import WorkerHost
from aiges.worker.sessions import GAP_WAIT_S, Sequencer, WorkerSession

log = logging.getLogger("aiges.worker")

POLL_INTERVAL_S = 0.05

ERROR_FOR = {
    "first": ErrorCode.WRAPPER_EXEC,
    "write": ErrorCode.WRAPPER_WRITE,
    "finish": ErrorCode.WRAPPER_READ,
    "destroy": ErrorCode.WRAPPER_DESTROY,
}
ENDING = (DataStatus.END, DataStatus.ONCE)


class Worker:
    def __init__(self, plugin: Plugin, channel: ipc.BlockingChannel, realtime: bool, codec: V2Codec,
                 peer_addr: str = "", batch_size: int = 1, batch_delay_ms: int = 0) -> None:
        self.plugin = plugin
        self.peer_addr = peer_addr
        self.batch_size = batch_size if "batch" in plugin.capabilities else 1
        self.batch_delay_s = batch_delay_ms / 1000
        self.validator = Validator(getattr(plugin, "mappings", {}))
        self.channel = channel
        self.realtime = realtime
        self.reads = "read" in plugin.capabilities
        self.codec = codec
        self.sessions: dict[str, WorkerSession] = {}
        self.by_handle: dict[str, str] = {}
        self.by_sid: dict[str, str] = {}
        self._outbox_lock = threading.Lock()
        self._calls: dict[str, tuple[str, str]] = {}
        """One-shot calls running now: tag -> (app id, sid), for the wrapper's callbacks."""
        self.handlers = {"first": self.first, "write": self.write, "finish": self.finish, "destroy": self.destroy}

    def serve(self) -> None:
        free_at = time.monotonic()
        while True:
            try:
                messages = self.channel.recv(self._next_timeout())
            except TimeoutError:
                self._run_timers()
                free_at = time.monotonic()
                continue
            except EOFError:
                return
            received_at = time.monotonic()
            if self.batch_size > 1:
                messages = self._fill_batch(messages)
            index = 0
            while index < len(messages):
                message = messages[index]
                if message[0] == "fini":
                    return
                if message[0] in ("pause", "resume"):
                    self._flow(message[0], message[1])
                    self.channel.done()
                    index += 1
                    continue
                group = self._once_group(messages, index) if self.batch_size > 1 else []
                if group:
                    self._run_batch(group, free_at, received_at)
                else:
                    self._handle(message, free_at, received_at)
                for _ in range(max(len(group), 1)):
                    self.channel.done()
                index += max(len(group), 1)
            self._run_timers()
            free_at = time.monotonic()

    def _fill_batch(self, messages: list) -> list:
        """Wait up to ``batch_delay_s`` for more first frames, until a batch is full."""
        deadline = time.monotonic() + self.batch_delay_s
        while sum(1 for m in messages if m[0] == "first") < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages.extend(self.channel.recv(left))
            except TimeoutError:
                break
        return messages

    def _once_group(self, messages: list, index: int) -> list[tuple]:
        """The run of one-shot first frames starting at ``index`` (at most a batch), decoded."""
        group = []
        for message in messages[index : index + self.batch_size]:
            if message[0] != "first" or message[6]:
                break
            try:
                frame = self.codec.first(message[3], message[4], (message[2], message[7], self.peer_addr))
            except AigesError:
                break
            if not frame.once or not frame.items:
                break
            try:
                self.validator.check(frame.params, frame.items)
            except AigesError:
                break
            group.append((message, frame))
        return group

    def _run_batch(self, group: list[tuple], free_at: float, received_at: float) -> None:
        """One wrapperBatchExec for a run of one-shot calls; each caller gets its own reply. The
        server is told which calls run together, so a hang fails them all and retries none."""
        self.channel.send(("started", [message[1] for message, _ in group]))
        started_at = time.monotonic()
        tags = [message[2] for message, _ in group]
        self._calls.update((tag, (f.app_id, f.params.get("sid", tag))) for tag, (_, f) in zip(tags, group, strict=True))
        try:
            results = self.plugin.batch(tags, [f.params for _, f in group], [f.items for _, f in group])
        except AigesError as exc:
            results = [exc] * len(group)
        except Exception as exc:  # noqa: BLE001 - user code
            log.error("wrapperBatchExec failed:\n%s", traceback.format_exc().rstrip())
            results = [AigesError(ErrorCode.WRAPPER_EXEC, f"{type(exc).__name__}: {exc}")] * len(group)
        finished_at = time.monotonic()
        for tag in tags:
            self._calls.pop(tag, None)
        for (message, frame), result in zip(group, results, strict=False):
            call_id = message[1]
            try:
                if isinstance(result, AigesError):
                    raise result
                reply = ("ok", call_id, ("once", ipc.out_of_band(frame.context.once(result))))
            except AigesError as exc:
                reply = ("err", call_id, exc.code, exc.message)
            self.channel.send((*reply, (free_at, received_at, started_at, finished_at)))

    def _handle(self, message: tuple, free_at: float, received_at: float) -> None:
        """Run one call and send its reply, with the timestamps the server computes legs from."""
        kind, call_id = message[0], message[1]
        started_at = time.monotonic()
        try:
            value = self.handlers[kind](*message[2:])
        except AigesError as exc:
            reply = ("err", call_id, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - user code: report, keep serving
            log.error("%s failed:\n%s", kind, traceback.format_exc().rstrip())
            reply = ("err", call_id, ERROR_FOR[kind], f"{type(exc).__name__}: {exc}")
        else:
            reply = ("ok", call_id, value)
        self.channel.send((*reply, (free_at, received_at, started_at, time.monotonic())))

    def _flow(self, kind: str, tag: str) -> None:
        """The server's back-pressure: "pause" while the session's client has too much unread
        output (its wrapper's output is not read meanwhile), "resume" once it has caught up."""
        session = self.sessions.get(tag)
        if session is None:
            return
        session.paused = kind == "pause"
        if not session.paused and (self.realtime or session.input_done):
            self.collect(session)

    def _next_timeout(self) -> float | None:
        timeout = None
        now = time.monotonic()
        for session in self.sessions.values():
            if self.reads and session.input_done and not session.output_done and not session.paused:
                timeout = POLL_INTERVAL_S if timeout is None else min(timeout, POLL_INTERVAL_S)
            if session.gap_deadline is not None:
                left = max(session.gap_deadline - now, 0.0)
                timeout = left if timeout is None else min(timeout, left)
        return timeout

    def _run_timers(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.gap_deadline is not None and session.gap_deadline <= now:
                log.warning("session %s: input gap skipped", session.tag)
                try:
                    self._write_frames(session, session.sequencer.skip_gap())
                except AigesError as exc:
                    self._fail(session, exc.code, exc.message)
                self._arm_gap(session)
            elif self.reads and session.input_done and not session.output_done and not session.paused:
                self.collect(session)

    def first(self, tag: str, raw: bytes, envelope: str, ordered: bool, session_only: bool, trace: str = "") -> tuple:
        """A first frame: a one-shot call (-> ("once", reply)) or a new session
        (-> ("session", serviceId, [outputs already produced]))."""
        frame = self.codec.first(raw, envelope, (tag, trace, self.peer_addr))
        once = frame.once and not session_only
        if once and not frame.items:
            raise AigesError(ErrorCode.INVALID_DATA, "input invalid data: the request carries no payloads")
        self.validator.check(frame.params, frame.items, inputs=once)
        if once:
            self._calls[tag] = (frame.app_id, frame.params.get("sid", tag))
            try:
                return ("once", ipc.out_of_band(frame.context.once(self.plugin.once(tag, frame.params, frame.items))))
            finally:
                self._calls.pop(tag, None)
        handle = wrapper_call(ErrorCode.WRAPPER_CREATE, self.plugin.create, tag, frame.params)
        session = WorkerSession(tag, handle, frame.context, Sequencer(frame.sync_id) if ordered else None)
        self.sessions[tag] = session
        self.by_handle[handle] = tag
        session.sid = frame.params.get("sid", tag)
        session.app_id = frame.app_id
        self.by_sid[session.sid] = tag
        session.outbox = []
        try:
            self._accept(session, frame.items, frame.sync_id)
            with self._outbox_lock:  # wrapper threads may push meanwhile (callbacks)
                outputs, session.outbox = session.outbox, None
            if session.failure is not None:
                raise session.failure
        except BaseException:
            self.destroy(tag)
            raise
        return ("session", frame.context.service_id, outputs)

    def write(self, tag: str, raw: bytes) -> None:
        session = self._session(tag)
        items, sync_id = self.codec.next(raw)
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

    def collect(self, session: WorkerSession) -> None:
        """Read whatever the plugin has ready for the session and push it to the server (a plugin
        whose results come only through its callback is never read)."""
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
            output, ended = session.context.batch(items)
        except AigesError as exc:
            self._fail(session, exc.code, exc.message)
            return
        session.output_done = ended
        output = ipc.out_of_band(output)
        with self._outbox_lock:
            if session.outbox is not None:
                session.outbox.append((output, ended))
                return
        self.channel.send(("output", session.tag, output, ended))

    def _fail(self, session: WorkerSession, code: int, message: str) -> None:
        """The session's output failed: while its first frame is handled, the first call itself
        fails with the error; later, the server is told."""
        session.output_done = True
        with self._outbox_lock:
            if session.outbox is not None:
                session.failure = session.failure or AigesError(code, message)
                return
        self.channel.send(("output_error", session.tag, code, message))

    def destroy(self, tag: str) -> None:
        session = self.sessions.pop(tag, None)
        if session is None:
            return
        self.by_handle.pop(session.handle, None)
        self.by_sid.pop(session.sid, None)
        self.plugin.destroy(session.handle)

    def _session_for(self, name: str) -> WorkerSession | None:
        """The session a callback names: by our handle, the wrapper's handle, or the request's sid."""
        tag = name if name in self.sessions else self.by_handle.get(name) or self.by_sid.get(name, "")
        return self.sessions.get(tag)

    def _session(self, tag: str) -> WorkerSession:
        session = self.sessions.get(tag)
        if session is None:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag} on this worker")
        return session

    def callback(self, response: Any, usr_tag: str, *_: Any) -> int:
        """Results a wrapper pushes from its own threads (``aiges_embed.callback``)."""
        from aiges.plugins.pyclass import result_items

        code = getattr(response, "error_code", 0)
        if code:
            return self.deliver_error(usr_tag, ErrorCode.WRAPPER_ASYNC, self.plugin.error_text(code))
        return self.deliver(usr_tag, result_items(response, "callback"))

    def deliver(self, name: str, items: list[DataItem]) -> int:
        """Output a wrapper pushes for the session ``name`` names: 0, or -1 if there is none."""
        session = self._session_for(name)
        if session is None:
            return -1
        self.push(session, items)
        return 0

    def deliver_error(self, name: str, code: int, message: str) -> int:
        session = self._session_for(name)
        if session is None:
            return -1
        self._fail(session, code, message)
        return 0

    def app_id_of(self, name: str) -> str:
        session = self._session_for(name)
        if session is not None:
            return session.app_id
        return self._calls.get(name, ("", ""))[0]

    def sid_of(self, name: str) -> str:
        session = self._session_for(name)
        if session is not None:
            return session.sid
        return self._calls.get(name, ("", name))[1]


def wrapper_schema(plugin: Plugin) -> dict | None:
    """The declared fields' schema, for wrappers that declare fields."""
    try:
        return plugin.schema()
    except Exception:  # noqa: BLE001 - odd declarations must not stop the worker
        log.warning("cannot build the wrapper's schema:\n%s", traceback.format_exc().rstrip())
        return None


def wrapper_call(code: ErrorCode, function, *args):
    """Call into the wrapper; an exception it raises becomes AigesError(code) with its text."""
    try:
        return function(*args)
    except AigesError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code
        log.error("%s failed:\n%s", getattr(function, "__name__", "wrapper call"), traceback.format_exc().rstrip())
        raise AigesError(code, f"{type(exc).__name__}: {exc}") from None


def install_embed_module(host: WorkerHost) -> None:
    """Provide ``aiges_embed``, which wrappers written for the original C++ shim import
    (``from aiges_embed import ResponseData, Response, ..., callback``). ``callback_metric`` is
    metering (usage counters), ``callback_trace`` a trace entry in the call's log."""
    from aiges import dto

    module = types.ModuleType("aiges_embed")
    for name in dto.__all__:
        setattr(module, name, getattr(dto, name))

    def callback(response: Any, usr_tag: str, *rest: Any) -> int:
        return host.worker.callback(response, usr_tag, *rest) if host.worker is not None else -1

    def callback_metric(usr_tag: str, key: str, count: int) -> int:
        host.usage(usr_tag, host.app_id(usr_tag), "", key, count)
        return 0

    def callback_trace(usr_tag: str, key: str, value: str) -> int:
        host.trace(usr_tag, "trace", key, value)
        return 0

    module.callback = callback
    module.callback_metric = callback_metric
    module.callback_trace = callback_trace
    sys.modules["aiges_embed"] = module


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies, so no worker is left behind."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiges-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--rings", help="fd of the ring from the server, fd of the ring to it, their size")
    args = parser.parse_args(argv)

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rings = (None, None)
    if args.rings:
        inbound, outbound, size = (int(v) for v in args.rings.split(","))
        rings = (ShmRing(size, inbound), ShmRing(size, outbound))
    channel = ipc.BlockingChannel(socket.socket(fileno=args.fd), send_ring=rings[1], recv_ring=rings[0])
    try:
        [(_, settings)] = channel.recv()
    except EOFError:
        return 1
    channel.done()
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.get("log_level", "INFO").upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    host = WorkerHost(channel)
    install_embed_module(host)
    started = time.monotonic()
    try:
        path = resolve_wrapper_path(settings["wrapper"])
        os.chdir(path.parent)
        plugin = load_plugin(path, settings.get("async_mode", False), host)
        plugin.init(settings["config"])
    except PluginLoadError as exc:
        channel.send(("init_failed", str(exc)))
        return 2
    except Exception:  # noqa: BLE001 - wrapperInit raised
        channel.send(("init_failed", f"wrapperInit raised:\n{traceback.format_exc().rstrip()}"))
        return 2
    worker = Worker(
        plugin, channel, settings.get("realtime", True), V2Codec(settings.get("header_pass", ("sid",))),
        settings.get("peer_addr", ""), settings.get("batch_size", 1), settings.get("batch_delay_ms", 0),
    )
    host.worker = worker
    channel.send((
        "ready",
        WorkerInfo(
            worker_id=args.worker_id,
            pid=os.getpid(),
            gpu=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            style=plugin.style,
            service_id=plugin.service_id or Path(path).parent.name,
            version=plugin.version,
            capabilities=plugin.capabilities,
            schema=wrapper_schema(plugin),
        ),
    ))
    log.debug("worker %d ready in %.0f ms", args.worker_id, (time.monotonic() - started) * 1000)
    try:
        worker.serve()
    finally:
        try:
            plugin.fini()
        except Exception:  # noqa: BLE001
            log.error("wrapperFini failed:\n%s", traceback.format_exc().rstrip())
        channel.close()
    return 0
