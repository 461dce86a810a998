"""The worker process: import the plugin, init it, serve calls from the server, fini.

Started by the pool as ``python -m aiges.worker --fd N --worker-id K`` with
``CUDA_VISIBLE_DEVICES`` already in its environment, so the plugin sees only its own GPU (as
device 0) from its first import on.

The worker decodes each call's frame with the codec its front named (``aiges.protocol.codecs``),
checks it against the wrapper's declared fields, runs the plugin and encodes the outputs. Calls
run one at a time, in the order they arrive; the server relies on that order for its exec-time
watchdog. Every answer carries the worker's timestamps (``messages.Timings``); the server
computes the per-leg latencies from them. The parts, by job:

    Worker            (here) the serve loop: reads the server's messages, answers each call
    OneShotCalls      (calls.py) one-shot calls and wrapperBatchExec batches; RunningCalls
    WorkerSessions    (sessions.py) sessions: create, write, read, pause, destroy, timers
    WorkerResources   (resources.py) the personalised resources the wrapper holds
    FrameDecoder      (decoding.py) a frame decoded with its front's codec
    WorkerHost        (host.py) the wrapper's callbacks
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
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiges.engine import ipc
from aiges.engine.items import DataItem, WorkerInfo
from aiges.engine.messages import (
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
    Pause,
    Ready,
    Resume,
    Timings,
    UnloadResource,
    WorkerSettings,
    Write,
)
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import Plugin, PluginLoadError
from aiges.plugins.loader import LoadOptions, load_plugin, resolve_wrapper_path
from aiges.worker.call_state import CallStates, CancelListener, running
from aiges.worker.calls import OneShotCalls
from aiges.worker.decoding import FrameDecoder
from aiges.worker.host import WorkerHost
from aiges.worker.resources import WorkerResources
from aiges.worker.sessions import WorkerSessions
from aiges.worker.wrapper import ERROR_FOR, wrapper_schema

log = logging.getLogger("aiges.worker")


class Worker:
    """The serve loop: reads the server's messages, hands each call to the part that runs it
    (one-shot calls and batches, sessions, resources), and answers it with its timestamps.
    Calls run one at a time, in the order they arrive."""

    def __init__(
        self, plugin: Plugin, channel: ipc.BlockingChannel, settings: WorkerSettings, states: CallStates | None = None
    ) -> None:
        self.channel = channel
        self.states = states or CallStates()
        decoder = FrameDecoder(settings.header_pass)
        self.resources = WorkerResources(plugin)
        self.calls = OneShotCalls(plugin, channel, decoder, self.resources, settings.batch_size, self.states)
        self.sessions = WorkerSessions(plugin, channel, decoder, self.resources, settings.realtime)
        self.batch_delay_s = settings.batch_delay_ms / 1000

    def serve(self) -> None:
        free_at = time.monotonic()
        while True:
            try:
                messages = self.channel.recv(self.sessions.next_timeout())
            except TimeoutError:
                self.sessions.run_timers()
                free_at = time.monotonic()
                continue
            except EOFError:
                return
            received_at = time.monotonic()
            if self.calls.batch_size > 1:
                messages = self._fill_batch(messages)
            index = 0
            while index < len(messages):
                message = messages[index]
                taken = 1
                match message:
                    case Fini():
                        return
                    case Pause(tag=tag) | Resume(tag=tag):
                        self.sessions.flow(tag, paused=isinstance(message, Pause))
                    case Once() if self.calls.batch_size > 1 and (group := self.calls.group(messages, index)):
                        self.calls.run_batch(group, free_at, received_at)
                        taken = len(group)
                    case _:
                        self._answer(message, free_at, received_at)
                for _ in range(taken):
                    self.channel.done()
                index += taken
            self.sessions.run_timers()
            free_at = time.monotonic()

    def _fill_batch(self, messages: list[Any]) -> list[Any]:
        """Wait up to ``batch_delay_s`` for more one-shot calls, until a batch is full."""
        deadline = time.monotonic() + self.batch_delay_s
        while sum(1 for m in messages if isinstance(m, Once)) < self.calls.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages.extend(self.channel.recv(left))
            except TimeoutError:
                break
        return messages

    def _answer(self, message: Any, free_at: float, received_at: float) -> None:
        """Run one call and send its answer, with the timestamps the server computes legs from."""
        started_at = time.monotonic()
        try:
            value = self._run(message)
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

    def _run(self, message: object) -> OnceReply | Opened | None:
        match message:
            case Once(call_id=call_id, context=context):
                with self._wanted(call_id, context.tag, context.deadline):
                    return self.calls.once(message)
            case Open(call_id=call_id, context=context):
                with self._wanted(call_id, context.tag, context.deadline):
                    return self.sessions.begin(message)
            case Write(call_id=call_id, tag=tag, frame=frame):
                with self._wanted(call_id, tag, 0.0):
                    self.sessions.write(tag, frame)
            case Finish(tag=tag):
                self.sessions.finish(tag)
            case Destroy(tag=tag):
                self.sessions.destroy(tag)
            case LoadResource(res_id=res_id, items=items):
                self.resources.load(res_id, items)
            case UnloadResource(res_id=res_id):
                self.resources.unload(res_id)
            case _:
                raise AigesError(ErrorCode.INVALID_OP, f"unknown message {type(message).__name__}")
        return None

    @contextlib.contextmanager
    def _wanted(self, call_id: int, tag: str, deadline: float) -> Iterator[None]:
        """Run a call only if its caller still waits for it and its deadline has not passed; while
        it runs, ``aiges.sdk.call_context()`` tells the wrapper's thread about it."""
        state = self.states.start(call_id, tag, deadline)
        try:
            if state.caller_gone:
                raise AigesError(ErrorCode.ONCE_TIMEOUT, "not run: its caller went away before it started")
            if state.cancelled:
                raise AigesError(ErrorCode.ONCE_TIMEOUT, "not run: its deadline passed before it started")
            with running(state):
                yield
        finally:
            self.states.end(state)

    # -- what the wrapper's callbacks need (through WorkerHost) ---------------------------------------

    def deliver(self, name: str, items: list[DataItem]) -> int:
        """Output a wrapper pushes for the session ``name`` names: 0, or -1 if there is none."""
        return self.sessions.deliver(name, items)

    def deliver_error(self, name: str, code: int, message: str) -> int:
        return self.sessions.deliver_error(name, code, message)

    def app_id_of(self, name: str) -> str:
        session = self.sessions.named(name)
        if session is not None:
            return session.app_id
        call = self.calls.running.get(name)
        return call.app_id if call is not None else ""

    def sid_of(self, name: str) -> str:
        session = self.sessions.named(name)
        if session is not None:
            return session.sid
        call = self.calls.running.get(name)
        return call.sid if call is not None else name


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
    channel: ipc.BlockingChannel,
    worker_id: int,
    exec_timeout_ms: int = 0,
    load: PluginLoader = load_in_its_folder,
    cancels: socket.socket | None = None,
) -> int:
    """A worker's life on its channel: take the settings, load and init the plugin, report ready,
    serve until told to stop (or the server is gone), fini. ``load`` builds the plugin (tests run
    a worker in a thread with a plugin of their own); ``cancels``: the socket the server names
    the calls whose callers went away on (read by a thread of its own)."""
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
    states = CallStates(on_cancel=lambda state: plugin.cancel(state.tag))
    if cancels is not None:
        CancelListener(cancels, states).start()
    worker = Worker(plugin, channel, settings, states)
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
    parser.add_argument("--cancel-fd", type=int, help="the socket the server names cancelled calls on")
    args = parser.parse_args(argv)

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rings: tuple[ShmRing | None, ShmRing | None] = (None, None)
    if args.rings:
        inbound, outbound, size = (int(v) for v in args.rings.split(","))
        rings = (ShmRing(size, inbound), ShmRing(size, outbound))
    channel = ipc.BlockingChannel(socket.socket(fileno=args.fd), send_ring=rings[1], recv_ring=rings[0])
    cancels = socket.socket(fileno=args.cancel_fd) if args.cancel_fd is not None else None
    return run(channel, args.worker_id, args.exec_timeout_ms, cancels=cancels)
