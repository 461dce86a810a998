"""How a worker process is started: the ``Launcher`` seam (processes in production, threads in
the unit tests' ``fake_workers``) and ``ProcessLauncher``, which runs ``python -m aiges.worker``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from aiges.engine.shm import ShmRing

if TYPE_CHECKING:
    from aiges.engine.pool.records import PoolSettings
    from aiges.engine.pool.slots import WorkerSlot

log = structlog.get_logger("aiges.pool")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Thread pools of numeric libraries: sized per worker, so N workers do not each start one
thread per core (unless the environment already says otherwise)."""


class Process(Protocol):
    """A running worker: an ``asyncio.subprocess.Process``, or a stand-in in tests."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    async def launch(
        self,
        slot: WorkerSlot,
        channel: Any,
        rings: tuple[ShmRing, ShmRing] | None,
        settings: PoolSettings,
        *,
        cancels: socket.socket | None = None,
    ) -> Process:
        """Start a worker on the worker end of ``channel`` (a socket), its rings, and the worker
        end of ``cancels`` (where the server names the calls whose callers went away)."""


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "its connection closed"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name}"
    return f"it exited with code {returncode}"


class ProcessLauncher:
    """Workers as ``python -m aiges.worker`` children, in their own session (a signal to the
    server's process group does not reach them; the server stops them), their output logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def launch(
        self,
        slot: WorkerSlot,
        channel: Any,
        rings: tuple[ShmRing, ShmRing] | None,
        settings: PoolSettings,
        *,
        cancels: socket.socket | None = None,
    ) -> Process:
        ring_args = ("--rings", f"{rings[0].fd},{rings[1].fd},{settings.shm_bytes}") if rings else ()
        cancel_args = ("--cancel-fd", str(cancels.fileno())) if cancels is not None else ()
        passed = (
            channel.fileno(),
            *((rings[0].fd, rings[1].fd) if rings else ()),
            *((cancels.fileno(),) if cancels is not None else ()),
        )
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        env["AIGES_WORKER_ID"] = str(slot.index)
        threads = settings.threads or max((os.cpu_count() or 1) // len(settings.gpus), 1)
        for variable in THREAD_VARIABLES:
            env.setdefault(variable, str(threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiges.worker",
            "--fd",
            str(channel.fileno()),
            "--worker-id",
            str(slot.index),
            "--exec-timeout-ms",
            str(settings.exec_timeout_ms),
            *ring_args,
            *cancel_args,
            pass_fds=passed,
            env=env,
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            task = asyncio.create_task(self._pump(slot.index, stream, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return process

    @staticmethod
    async def _pump(index: int, stream: asyncio.StreamReader, name: str) -> None:
        """Log what the wrapper prints, one event per line, tagged with the worker."""
        levels = {"ERROR": log.error, "CRITICAL": log.error, "WARNING": log.warning, "DEBUG": log.debug}
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if not text:
                continue
            emit = levels.get(text.split(" ", 1)[0], log.info)
            emit("wrapper output", worker=index, stream=name, line=text)
