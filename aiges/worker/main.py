"""The worker process: import the plugin, init it, serve calls from the server, fini.

Started by the pool as ``python -m aiges.worker --fd N --worker-id K`` with
``CUDA_VISIBLE_DEVICES`` already in its environment, so the plugin sees only its own GPU (as
device 0) from its first import on.

The worker decodes each call's frame with the codec its front named (``aiges.protocol.codecs``),
checks it against the wrapper's declared fields, runs the plugin and encodes the outputs; it
owns its sessions' wrapper handles, output encoders and input reorder buffers. Calls run one at a
time, in the order they arrive; the server relies on that order for its exec-time watchdog.
Every answer carries the worker's timestamps (``messages.Timings``); the server computes the
per-leg latencies from them.

Personalised resources: ``LoadResource`` / ``UnloadResource`` load and unload them in the
wrapper; the worker knows which ids it holds, so that a call or a session naming one it does not
hold (``aiges.res_ids``) gets 10120 before the wrapper runs.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiges.engine import ipc
from aiges.engine.items import DataItem, DataStatus, WorkerInfo
from aiges.engine.messages import (
    CallContext,
    Destroy,
    Done,
    Failed,
    Fini,
    Finish,
    Frame,
    Init,
    InitFailed,
    Items,
    ItemsOutput,
    LoadResource,
    Once,
    OnceReply,
    Open,
    Opened,
    Output,
    Pause,
    Ready,
    Resume,
    SessionFailed,
    SessionOutput,
    Started,
    Timings,
    UnloadResource,
    Wire,
    WorkerSettings,
    Write,
)
from aiges.engine.resources import RES_IDS_PARAM, parse_res_ids, unknown
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import Plugin, PluginLoadError
from aiges.plugins.loader import LoadOptions, load_plugin, resolve_wrapper_path
from aiges.protocol.codecs import ITEMS, Codec, Decoded, codecs, owned
from aiges.schema.validation import Validator
from aiges.worker.host import WorkerHost
from aiges.worker.session_state import GAP_WAIT_S, Sequencer, WorkerSession

log = logging.getLogger("aiges.worker")

POLL_INTERVAL_S = 0.05
ENDING = (DataStatus.END, DataStatus.ONCE)
T = TypeVar("T")


def out_of_band(output: Output) -> Output:
    """Mark an output's payloads to travel beside the message (in the ring when large)."""
    if isinstance(output, ItemsOutput):
        items = [
            DataItem(i.key, ipc.out_of_band(i.data), i.type, i.status, i.desc)  # type: ignore[arg-type]
            for i in output.items
        ]
        return output._replace(items=items)
    return ipc.out_of_band(output)  # type: ignore[return-value]


class Worker:
    def __init__(self, plugin: Plugin, channel: ipc.BlockingChannel, settings: WorkerSettings) -> None:
        self.plugin = plugin
        self.channel = channel
        self.realtime = settings.realtime
        self.peer_addr = settings.peer_addr
        self.codecs: dict[str, Codec] = codecs(settings.header_pass)
        self.batch_size = settings.batch_size if "batch" in plugin.capabilities else 1
        self.batch_delay_s = settings.batch_delay_ms / 1000
        self.reads = "read" in plugin.capabilities
        self.validator = Validator(plugin.fields)
        self.sessions: dict[str, WorkerSession] = {}
        self.by_handle: dict[str, str] = {}
        self.by_sid: dict[str, str] = {}
        self._outbox_lock = threading.Lock()
        self._calls: dict[str, tuple[str, str]] = {}
        """One-shot calls running now: tag -> (app id, sid), for the wrapper's callbacks."""
        self.resources: set[int] = set()
        """The personalised resources loaded in the wrapper, by id."""

    # -- the loop ----------------------------------------------------------------------------------

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
                taken = 1
                match message:
                    case Fini():
                        return
                    case Pause(tag=tag) | Resume(tag=tag):
                        self._flow(tag, paused=isinstance(message, Pause))
                    case Once() if self.batch_size > 1 and (group := self._once_group(messages, index)):
                        self._run_batch(group, free_at, received_at)
                        taken = len(group)
                    case _:
                        self._answer(message, free_at, received_at)
                for _ in range(taken):
                    self.channel.done()
                index += taken
            self._run_timers()
            free_at = time.monotonic()

    def _answer(self, message: Any, free_at: float, received_at: float) -> None:
        """Run one call and send its answer, with the timestamps the server computes legs from."""
        started_at = time.monotonic()
        try:
            match message:
                case Once():
                    value: OnceReply | Opened | None = self.once(message)
                case Open():
                    value = self.open(message)
                case Write(tag=tag, frame=frame):
                    self.write(tag, frame)
                    value = None
                case Finish(tag=tag):
                    self.finish(tag)
                    value = None
                case Destroy(tag=tag):
                    self.destroy(tag)
                    value = None
                case LoadResource(res_id=res_id, items=items):
                    self.load_resource(res_id, items)
                    value = None
                case UnloadResource(res_id=res_id):
                    self.unload_resource(res_id)
                    value = None
                case _:
                    raise AigesError(ErrorCode.INVALID_OP, f"unknown message {type(message).__name__}")
        except AigesError as exc:
            answer: Done | Failed = Failed(
                message.call_id, exc.code, exc.message, Timings(free_at, received_at, started_at, time.monotonic())
            )
        except Exception as exc:  # noqa: BLE001 - user code: report, keep serving
            log.error("%s failed:\n%s", type(message).__name__, traceback.format_exc().rstrip())
            answer = Failed(
                message.call_id,
                ERROR_FOR.get(type(message), ErrorCode.WRAPPER_EXEC),
                f"{type(exc).__name__}: {exc}",
                Timings(free_at, received_at, started_at, time.monotonic()),
            )
        else:
            answer = Done(message.call_id, value, Timings(free_at, received_at, started_at, time.monotonic()))
        self.channel.send(answer)

    # -- one-shot calls ------------------------------------------------------------------------------

    def _decode(self, head: CallContext, frame: Frame) -> Decoded:
        match frame:
            case Wire(codec=name, data=data):
                codec = self.codecs.get(name)
                if codec is None:
                    raise AigesError(ErrorCode.INVALID_OP, f"no codec {name!r} in the worker")
                return codec.first(data, head)
            case Items():
                return self.codecs[ITEMS].first(frame, head)
        raise AigesError(ErrorCode.INVALID_DATA, f"a call cannot carry {type(frame).__name__}")

    def once(self, message: Once) -> OnceReply:
        """A one-shot call."""
        head = message.context
        decoded = self._decode(head, message.frame)
        if not decoded.items:
            raise AigesError(ErrorCode.INVALID_DATA, "input invalid data: the request carries no payloads")
        res_ids = self._res_ids(decoded.params)
        self.validator.check(decoded.params, decoded.items)
        tag = head.tag
        self._calls[tag] = (decoded.app_id, decoded.params.get("sid", tag))
        try:
            items = self.plugin.once(tag, decoded.params, decoded.items, res_ids)
        finally:
            self._calls.pop(tag, None)
        return OnceReply(out_of_band(decoded.encoder.once(items)))

    def _fill_batch(self, messages: list[Any]) -> list[Any]:
        """Wait up to ``batch_delay_s`` for more one-shot calls, until a batch is full."""
        deadline = time.monotonic() + self.batch_delay_s
        while sum(1 for m in messages if isinstance(m, Once)) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages.extend(self.channel.recv(left))
            except TimeoutError:
                break
        return messages

    def _once_group(self, messages: list[Any], index: int) -> list[tuple[Once, Decoded]]:
        """The run of one-shot calls starting at ``index`` (at most a batch), decoded and valid;
        a call that is not (a session frame, bad input) is left to be answered on its own."""
        group = []
        for message in messages[index : index + self.batch_size]:
            if not isinstance(message, Once):
                break
            try:
                decoded = self._decode(message.context, message.frame)
            except AigesError:
                break
            if not decoded.once or not decoded.items or RES_IDS_PARAM in decoded.params:
                break  # a call naming resources runs on its own: wrapperBatchExec has no person ids
            try:
                self.validator.check(decoded.params, decoded.items)
            except AigesError:
                break
            group.append((message, decoded))
        return group

    def _run_batch(self, group: list[tuple[Once, Decoded]], free_at: float, received_at: float) -> None:
        """One wrapperBatchExec for a run of one-shot calls; each caller gets its own answer. The
        server is told which calls run together, so a hang fails them all and retries none."""
        self.channel.send(Started([message.call_id for message, _ in group]))
        started_at = time.monotonic()
        tags = [message.context.tag for message, _ in group]
        self._calls.update((tag, (d.app_id, d.params.get("sid", tag))) for tag, (_, d) in zip(tags, group, strict=True))
        try:
            results = self.plugin.batch(tags, [d.params for _, d in group], [d.items for _, d in group])
        except AigesError as exc:
            results = [exc] * len(group)
        except Exception as exc:  # noqa: BLE001 - user code
            log.error("wrapperBatchExec failed:\n%s", traceback.format_exc().rstrip())
            results = [AigesError(ErrorCode.WRAPPER_EXEC, f"{type(exc).__name__}: {exc}")] * len(group)
        finally:
            for tag in tags:
                self._calls.pop(tag, None)
        timings = Timings(free_at, received_at, started_at, time.monotonic())
        answers: list[Done | Failed] = []
        for (message, decoded), result in zip(group, results, strict=False):
            try:
                if isinstance(result, AigesError):
                    raise result
                answers.append(Done(message.call_id, OnceReply(out_of_band(decoded.encoder.once(result))), timings))
            except AigesError as exc:
                answers.append(Failed(message.call_id, exc.code, exc.message, timings))
        self.channel.send_all(answers)

    # -- sessions ----------------------------------------------------------------------------------

    def open(self, message: Open) -> Opened:
        head = message.context
        return self._open(head.tag, self._decode(head, message.frame), message.ordered)

    def _open(self, tag: str, decoded: Decoded, ordered: bool) -> Opened:
        """A new session: wrapperCreate, then its first frame's items are written. Output (or an
        output error) produced meanwhile is part of the answer."""
        res_ids = self._res_ids(decoded.params)
        self.validator.check(decoded.params, decoded.items, inputs=False)
        handle = wrapper_call(ErrorCode.WRAPPER_CREATE, self.plugin.create, tag, decoded.params, res_ids)
        session = WorkerSession(
            tag,
            handle,
            decoded.encoder,
            Sequencer(decoded.sync_id) if ordered else None,
            sid=decoded.params.get("sid", tag),
            app_id=decoded.app_id,
        )
        self.sessions[tag] = session
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
        match frame:
            case Wire(codec=name, data=data):
                items, sync_id = self.codecs[name].next(data)
            case Items():
                items, sync_id = self.codecs[ITEMS].next(frame)
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
        output = out_of_band(output)
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

    def destroy(self, tag: str) -> None:
        session = self.sessions.pop(tag, None)
        if session is None:
            return
        if self.by_handle.get(session.handle) == tag:  # a wrapper may have given the handle out again
            del self.by_handle[session.handle]
        if self.by_sid.get(session.sid) == tag:
            del self.by_sid[session.sid]
        self.plugin.destroy(session.handle)

    # -- personalised resources -------------------------------------------------------------------

    def _res_ids(self, params: dict[str, str]) -> tuple[int, ...]:
        """The resources a call or a session names (taken out of its params: the wrapper gets
        them as person ids); 10120 for one this worker does not hold."""
        text = params.pop(RES_IDS_PARAM, None)
        if not text:
            return ()
        res_ids = parse_res_ids(text)
        for res_id in res_ids:
            if res_id not in self.resources:
                raise unknown(res_id)
        return res_ids

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        wrapper_call(ErrorCode.WRAPPER_LOAD, self.plugin.load_resource, res_id, owned(items))
        self.resources.add(res_id)

    def unload_resource(self, res_id: int) -> None:
        if res_id in self.resources:
            try:
                wrapper_call(ErrorCode.WRAPPER_UNLOAD, self.plugin.unload_resource, res_id)
            finally:  # forgotten by the server either way: calls naming it get 10120 here too
                self.resources.discard(res_id)

    def _session(self, tag: str) -> WorkerSession:
        session = self.sessions.get(tag)
        if session is None:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag} on this worker")
        return session

    def _flow(self, tag: str, paused: bool) -> None:
        """The server's back-pressure: paused while the session's client has too much unread
        output (its wrapper's output is not read meanwhile), resumed once it has caught up."""
        session = self.sessions.get(tag)
        if session is None:
            return
        session.paused = paused
        if not paused and (self.realtime or session.input_done):
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
                    assert session.sequencer is not None
                    self._write_frames(session, session.sequencer.skip_gap())
                except AigesError as exc:
                    self._fail(session, exc.code, exc.message)
                self._arm_gap(session)
            elif self.reads and session.input_done and not session.output_done and not session.paused:
                self.collect(session)

    # -- what the wrapper's callbacks need (through WorkerHost) ---------------------------------------

    def _session_for(self, name: str) -> WorkerSession | None:
        """The session a callback names: by our handle, the wrapper's handle, or the request's sid."""
        tag = name if name in self.sessions else self.by_handle.get(name) or self.by_sid.get(name, "")
        return self.sessions.get(tag)

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


ERROR_FOR: dict[type, ErrorCode] = {
    Once: ErrorCode.WRAPPER_EXEC,
    Open: ErrorCode.WRAPPER_EXEC,
    Write: ErrorCode.WRAPPER_WRITE,
    Finish: ErrorCode.WRAPPER_READ,
    Destroy: ErrorCode.WRAPPER_DESTROY,
    LoadResource: ErrorCode.WRAPPER_LOAD,
    UnloadResource: ErrorCode.WRAPPER_UNLOAD,
}
"""The code an unexpected exception in the wrapper gets, by the call it broke."""


def wrapper_call(code: ErrorCode, function: Callable[..., T], *args: Any) -> T:
    """Call into the wrapper; an exception it raises becomes AigesError(code) with its text."""
    try:
        return function(*args)
    except AigesError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code
        log.error("%s failed:\n%s", getattr(function, "__name__", "wrapper call"), traceback.format_exc().rstrip())
        raise AigesError(code, f"{type(exc).__name__}: {exc}") from None


def wrapper_schema(plugin: Plugin) -> dict[str, Any] | None:
    """The declared fields' schema, for wrappers that declare fields."""
    try:
        return plugin.schema()
    except Exception:  # noqa: BLE001 - odd declarations must not stop the worker
        log.warning("cannot build the wrapper's schema:\n%s", traceback.format_exc().rstrip())
        return None


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies, so no worker is left behind."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


PluginLoader = Callable[[Path, WorkerHost, LoadOptions], Plugin]


def load_in_its_folder(path: Path, host: WorkerHost, options: LoadOptions) -> Plugin:
    """The wrapper runs in its own folder, as the original loader ran it (relative paths in a
    wrapper, such as ``test_data/...``, are relative to it)."""
    os.chdir(path.parent)
    return load_plugin(path, host, options)


def run(
    channel: ipc.BlockingChannel, worker_id: int, exec_timeout_ms: int = 0, load: PluginLoader = load_in_its_folder
) -> int:
    """A worker's life on its channel: take the settings, load and init the plugin, report ready,
    serve until told to stop (or the server is gone), fini. ``load`` builds the plugin (tests run
    a worker in a thread with a plugin of their own)."""
    try:
        [init] = channel.recv()
    except EOFError:
        return 1
    channel.done()
    if not isinstance(init, Init):
        return 1
    settings = init.settings
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    host = WorkerHost(channel)
    started = time.monotonic()
    try:
        path = resolve_wrapper_path(settings.wrapper)
        plugin = load(path, host, LoadOptions(settings.async_mode, exec_timeout_ms / 1000 or None))
        plugin.init(settings.config)
    except PluginLoadError as exc:
        channel.send(InitFailed(str(exc)))
        return 2
    except Exception:  # noqa: BLE001 - wrapperInit raised
        channel.send(InitFailed(f"wrapperInit raised:\n{traceback.format_exc().rstrip()}"))
        return 2
    worker = Worker(plugin, channel, settings)
    host.worker = worker
    channel.send(
        Ready(
            WorkerInfo(
                worker_id=worker_id,
                pid=os.getpid(),
                gpu=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                style=plugin.style,
                service_id=plugin.service_id or Path(path).parent.name,
                version=plugin.version,
                capabilities=plugin.capabilities,
                schema=wrapper_schema(plugin),
            )
        )
    )
    log.debug("worker %d ready in %.0f ms", worker_id, (time.monotonic() - started) * 1000)
    try:
        worker.serve()
    finally:
        try:
            plugin.fini()
        except Exception:  # noqa: BLE001
            log.error("wrapperFini failed:\n%s", traceback.format_exc().rstrip())
        channel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiges-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--rings", help="fd of the ring from the server, fd of the ring to it, their size")
    parser.add_argument("--exec-timeout-ms", type=int, default=0)
    args = parser.parse_args(argv)

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rings: tuple[ShmRing | None, ShmRing | None] = (None, None)
    if args.rings:
        inbound, outbound, size = (int(v) for v in args.rings.split(","))
        rings = (ShmRing(size, inbound), ShmRing(size, outbound))
    channel = ipc.BlockingChannel(socket.socket(fileno=args.fd), send_ring=rings[1], recv_ring=rings[0])
    return run(channel, args.worker_id, args.exec_timeout_ms)
