"""Workers without processes: the real worker loop (``aiges.worker.main.run``) in a thread, on a
real socket pair and shared-memory rings, serving a plugin written here. The engine and pool
under test are the real ones; only the process is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aiges.engine import ipc
from aiges.engine.engine import Engine, EngineSettings
from aiges.engine.items import DataItem, DataStatus
from aiges.engine.messages import Report, WorkerSettings
from aiges.engine.pool import PoolSettings, WorkerSlot
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import NO_FIELDS, PluginHost, PluginLoadError, batch_by_once
from aiges.worker.main import run

_pids = itertools.count(100000)


class ScriptedPlugin:
    """A plugin whose behaviour the test picks per call with the param ``mode``:

    echo (default)  the inputs come back as "out" (followed by the config's "mark"); sleep=<s>
                    sleeps first
    fail            10909 with "asked to fail"
    hang            blocks until released (``release``)
    die             the worker dies (its thread ends, as a killed process would)

    Sessions: every written item comes back as "out" at the next read, with its status; with
    ``chunk_kb`` set at create, every read returns a chunk of that size (a flood).

    Resources: a loaded resource's first item is a word that one-shot calls naming it append
    (" +word"); the data b"refuse" is refused (10903), b"slow" takes 0.3 s to load.
    """

    style = "scripted"
    service_id = "scripted"
    version = "1"
    capabilities = frozenset({"once", "stream", "read", "resources"})
    fields = NO_FIELDS

    def __init__(self, host: PluginHost, dies: threading.Event) -> None:
        self.host = host
        self.dies = dies
        self.sessions: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []
        self.cancelled: list[str] = []
        self.reads = 0
        self.release = threading.Event()
        self.resources: dict[int, bytes] = {}
        self.mark = b""

    def init(self, config: dict[str, str]) -> None:
        if config.get("fail_init"):
            raise PluginLoadError("asked to fail its init")
        self.mark = config.get("mark", "").encode()

    def fini(self) -> None:
        return None

    def error_text(self, code: int) -> str:
        return "asked to fail"

    def schema(self) -> dict[str, Any] | None:
        return None

    def _mode(self, params: dict[str, str]) -> None:
        mode = params.get("mode", "echo")
        if "sleep" in params:
            time.sleep(float(params["sleep"]))
        if mode == "fail":
            raise AigesError(ErrorCode.WRAPPER_EXEC, "asked to fail")
        if mode == "hang":
            self.release.wait(30)
        if mode == "die":
            self.dies.set()
            raise SystemExit

    def once(
        self, tag: str, params: dict[str, str], items: list[DataItem], res_ids: tuple[int, ...] = ()
    ) -> list[DataItem]:
        self._mode(params)
        words = b"".join(b" +" + self.resources[res_id] for res_id in res_ids)
        return [DataItem("out", bytes(item.data) + words + self.mark, item.type, DataStatus.ONCE, {}) for item in items]

    def batch(
        self, tags: list[str], params: list[dict[str, str]], items: list[list[DataItem]]
    ) -> list[list[DataItem] | AigesError]:
        return batch_by_once(self, tags, params, items)

    def create(self, tag: str, params: dict[str, str], res_ids: tuple[int, ...] = ()) -> str:
        self._mode(params)
        self.sessions[tag] = {"ready": [], "chunk": b"x" * (int(params.get("chunk_kb", "0")) << 10)}
        return tag

    def write(self, handle: str, items: list[DataItem]) -> None:
        for item in items:
            if item.data == b"die":
                self.dies.set()
                raise SystemExit
            self.sessions[handle]["ready"].append(DataItem("out", item.data, item.type, item.status, {}))

    def read(self, handle: str) -> list[DataItem]:
        self.reads += 1
        session = self.sessions[handle]
        if session["chunk"]:
            return [DataItem("out", session["chunk"], 0, DataStatus.CONTINUE, {})]
        ready, session["ready"] = session["ready"], []
        return ready

    def destroy(self, handle: str) -> None:
        self.sessions.pop(handle, None)
        self.destroyed.append(handle)

    def cancel(self, tag: str) -> None:
        self.cancelled.append(tag)

    def load_resource(self, res_id: int, items: list[DataItem]) -> None:
        if items[0].data == b"refuse":
            raise AigesError(ErrorCode.WRAPPER_LOAD, "refused;code=5")
        if items[0].data == b"slow":
            time.sleep(0.3)
        self.resources[res_id] = bytes(items[0].data)

    def unload_resource(self, res_id: int) -> None:
        self.resources.pop(res_id, None)


class ThreadProcess:
    """What the pool holds of a worker: here, a thread running the worker loop."""

    def __init__(self, thread: threading.Thread, sock: socket.socket, done: asyncio.Future[int]) -> None:
        self.pid = next(_pids)
        self._thread = thread
        self._sock = sock
        self._done = done

    @property
    def returncode(self) -> int | None:
        return self._done.result() if self._done.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._done)

    def kill(self) -> None:
        """As SIGKILL: the worker's end of the channel goes away at once."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


class ThreadLauncher:
    def __init__(self) -> None:
        self.plugins: list[ScriptedPlugin] = []

    async def launch(
        self,
        slot: WorkerSlot,
        channel: Any,
        rings: tuple[ShmRing, ShmRing] | None,
        settings: PoolSettings,
        *,
        cancels: socket.socket | None = None,
    ) -> ThreadProcess:
        loop = asyncio.get_running_loop()
        worker_cancels = socket.socket(fileno=os.dup(cancels.fileno())) if cancels is not None else None
        done: asyncio.Future[int] = loop.create_future()
        sock = socket.socket(fileno=channel.detach())
        worker_rings: tuple[ShmRing | None, ShmRing | None] = (None, None)
        if rings:  # its own mappings of the same memory, as a worker process has
            worker_rings = (
                ShmRing(settings.shm_bytes, os.dup(rings[0].fd)),
                ShmRing(settings.shm_bytes, os.dup(rings[1].fd)),
            )
        blocking = ipc.BlockingChannel(sock, send_ring=worker_rings[1], recv_ring=worker_rings[0])
        dies = threading.Event()

        def load(path: Path, host: PluginHost, options: Any) -> ScriptedPlugin:
            plugin = ScriptedPlugin(host, dies)
            self.plugins.append(plugin)
            return plugin

        def body() -> None:
            code = 0
            try:
                code = run(blocking, slot.index, settings.exec_timeout_ms, load=load, cancels=worker_cancels)
            except (SystemExit, OSError):  # it "died", or its channel was cut (killed)
                code = -9
            finally:
                sock.close()
                if worker_cancels is not None:
                    worker_cancels.close()
                for ring in worker_rings:
                    if ring is not None:
                        with contextlib.suppress(BufferError):  # a view the worker still held
                            ring.close()
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(code))

        thread = threading.Thread(target=body, name=f"fake-worker-{slot.index}", daemon=True)
        thread.start()
        return ThreadProcess(thread, sock, done)


def engine_settings(
    tmp_path: Path,
    *,
    workers: int = 1,
    licences: int = 10,
    exec_timeout_ms: int = 5000,
    output_kb: int = 4096,
    ttl_ms: int = 60000,
    resource_count: int = 100,
    resource_bytes: int = 1 << 20,
) -> EngineSettings:
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text("# the fake workers never import it\n")
    worker = WorkerSettings(
        wrapper=str(wrapper),
        config={},
        realtime=True,
        header_pass=("sid",),
        peer_addr="test:1",
        batch_size=1,
        batch_delay_ms=0,
        async_mode=False,
        log_level="warning",
    )
    pool = PoolSettings(
        worker=worker,
        gpus=[""] * workers,
        exec_timeout_ms=exec_timeout_ms,
        shm_bytes=1 << 20,
        resource_count=resource_count,
        resource_bytes=resource_bytes,
    )
    return EngineSettings(
        pool=pool, licences=licences, session_ttl_ms=ttl_ms, expiry_scan_ms=100, session_output_bytes=output_kb << 10
    )


def engine_with_fakes(tmp_path: Path, **options: Any) -> tuple[Engine, ThreadLauncher, list[Report]]:
    launcher = ThreadLauncher()
    reports: list[Report] = []
    return Engine(engine_settings(tmp_path, **options), reports.append, launcher), launcher, reports
