"""The worker process: import the plugin, init it, serve calls from the server, fini.

Started by the pool as ``python -m aiges.worker --fd N --worker-id K`` with
``CUDA_VISIBLE_DEVICES`` already in its environment, so the plugin sees only its own GPU (as
device 0) from its first import on. Calls run one at a time, in the order they arrive; the
server relies on that order for its exec-time watchdog.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiges.engine import ipc
from aiges.engine.types import DataItem, DataStatus, WorkerInfo
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.base import Plugin, PluginLoadError
from aiges.plugins.loader import load_plugin, resolve_wrapper_path

log = logging.getLogger("aiges.worker")

POLL_INTERVAL_S = 0.05

ERROR_FOR = {
    "once": ErrorCode.WRAPPER_EXEC,
    "create": ErrorCode.WRAPPER_CREATE,
    "write": ErrorCode.WRAPPER_WRITE,
    "finish": ErrorCode.WRAPPER_READ,
    "read": ErrorCode.WRAPPER_READ,
    "destroy": ErrorCode.WRAPPER_DESTROY,
}


@dataclass
class SessionState:
    handle: str
    input_done: bool = False
    output_done: bool = False


class Worker:
    def __init__(self, plugin: Plugin, channel: ipc.BlockingChannel, realtime: bool) -> None:
        self.plugin = plugin
        self.channel = channel
        self.realtime = realtime
        self.sessions: dict[str, SessionState] = {}
        self.by_handle: dict[str, str] = {}

    def serve(self) -> None:
        handlers = {
            "once": self.once,
            "create": self.create,
            "write": self.write,
            "finish": self.finish,
            "destroy": self.destroy,
        }
        while True:
            waiting = [tag for tag, s in self.sessions.items() if s.input_done and not s.output_done]
            try:
                message = self.channel.recv(POLL_INTERVAL_S if waiting else None)
            except TimeoutError:
                for tag in waiting:
                    self.collect(tag)
                continue
            except EOFError:
                return
            kind = message[0]
            if kind == "fini":
                return
            handler = handlers[kind]
            call_id = message[1]
            try:
                value = handler(*message[2:])
            except AigesError as exc:
                self.channel.send(("err", call_id, exc.code, exc.message))
            except Exception as exc:  # noqa: BLE001 - user code: report, keep serving
                log.error("%s failed:\n%s", kind, traceback.format_exc().rstrip())
                self.channel.send(("err", call_id, ERROR_FOR[kind], f"{type(exc).__name__}: {exc}"))
            else:
                self.channel.send(("ok", call_id, value))

    def once(self, tag: str, params: dict[str, str], items: list[DataItem]) -> list[DataItem]:
        return self.plugin.once(tag, params, items)

    def create(self, tag: str, params: dict[str, str]) -> str:
        handle = self.plugin.create(tag, params)
        self.sessions[tag] = SessionState(handle)
        self.by_handle[handle] = tag
        return handle

    def write(self, tag: str, items: list[DataItem]) -> None:
        session = self._session(tag)
        self.plugin.write(session.handle, items)
        if any(i.status in (DataStatus.END, DataStatus.ONCE) for i in items):
            session.input_done = True
        if self.realtime or session.input_done:
            self.collect(tag)

    def finish(self, tag: str) -> None:
        """No more input will come: read until the wrapper's output ends."""
        session = self._session(tag)
        session.input_done = True
        self.collect(tag)

    def collect(self, tag: str) -> None:
        """Read whatever the plugin has ready for ``tag`` and push it to the server."""
        session = self.sessions.get(tag)
        if session is None or session.output_done:
            return
        try:
            items = self.plugin.read(session.handle)
        except AigesError as exc:
            session.output_done = True
            self.channel.send(("output_error", tag, exc.code, exc.message))
            return
        except Exception as exc:  # noqa: BLE001
            log.error("read failed:\n%s", traceback.format_exc().rstrip())
            session.output_done = True
            self.channel.send(("output_error", tag, ErrorCode.WRAPPER_READ, f"{type(exc).__name__}: {exc}"))
            return
        self.push(tag, items)

    def push(self, tag: str, items: list[DataItem]) -> None:
        if not items:
            return
        session = self.sessions.get(tag)
        if session is not None and any(i.status in (DataStatus.END, DataStatus.ONCE) for i in items):
            session.output_done = True
        self.channel.send(("output", tag, items))

    def destroy(self, tag: str) -> None:
        session = self.sessions.pop(tag, None)
        if session is None:
            return
        self.by_handle.pop(session.handle, None)
        self.plugin.destroy(session.handle)

    def _session(self, tag: str) -> SessionState:
        session = self.sessions.get(tag)
        if session is None:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {tag} on this worker")
        return session

    def callback(self, response: Any, usr_tag: str, *_: Any) -> int:
        """Results a wrapper pushes from its own threads (``aiges_embed.callback``)."""
        from aiges.plugins.pyclass import result_items

        tag = usr_tag if usr_tag in self.sessions else self.by_handle.get(usr_tag, usr_tag)
        if tag not in self.sessions:
            return -1
        code = getattr(response, "error_code", 0)
        if code:
            self.channel.send(("output_error", tag, ErrorCode.WRAPPER_ASYNC, self.plugin.error_text(code)))
            return 0
        self.push(tag, result_items(response, "callback"))
        return 0


def install_embed_module(worker_ref: list[Worker]) -> None:
    """Provide ``aiges_embed``, which wrappers written for the original C++ shim import
    (``from aiges_embed import ResponseData, Response, ..., callback``)."""
    from aiges import dto

    module = types.ModuleType("aiges_embed")
    for name in dto.__all__:
        setattr(module, name, getattr(dto, name))

    def callback(response: Any, usr_tag: str, *rest: Any) -> int:
        return worker_ref[0].callback(response, usr_tag, *rest) if worker_ref else -1

    module.callback = callback
    module.callback_metric = lambda *args: 0
    module.callback_trace = lambda *args: 0
    sys.modules["aiges_embed"] = module


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies, so no worker is left behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiges-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    args = parser.parse_args(argv)

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = ipc.BlockingChannel(socket.socket(fileno=args.fd))
    try:
        _, settings = channel.recv()
    except EOFError:
        return 1
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.get("log_level", "INFO").upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    worker_ref: list[Worker] = []
    install_embed_module(worker_ref)
    started = time.monotonic()
    try:
        path = resolve_wrapper_path(settings["wrapper"])
        os.chdir(path.parent)
        plugin = load_plugin(path)
        plugin.init(settings["config"])
    except PluginLoadError as exc:
        channel.send(("init_failed", str(exc)))
        return 2
    except Exception:  # noqa: BLE001 - wrapperInit raised
        channel.send(("init_failed", f"wrapperInit raised:\n{traceback.format_exc().rstrip()}"))
        return 2
    worker = Worker(plugin, channel, settings.get("realtime", True))
    worker_ref.append(worker)
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
