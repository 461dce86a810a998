"""HAProxy itself, run in master-worker mode in the foreground (``haproxy -W -db``), so that a
reload (SIGUSR2 to the master) starts a new worker on the same listening sockets while the old
one finishes its connections: no connection is refused during it. Before a reload the servers'
state is saved to the ``server-state-file``, which the new worker loads, so every server keeps
its address, state and weight through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import structlog

from aiges.platform.gateway.haproxy_config import Settings
from aiges.platform.gateway.runtime_api import RuntimeApi, RuntimeApiError

log = structlog.get_logger("aiges.gateway")

READY_S = 15.0


class HaproxyError(Exception):
    """HAProxy would not start, reload or take a config; the message says why."""


def check_config(binary: str, path: Path) -> None:
    """``haproxy -c``: raises HaproxyError with its own words when the config is invalid."""
    result = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise HaproxyError(f"haproxy -c {path}: {(result.stderr or result.stdout).strip()}")


class HaproxyProcess:
    def __init__(self, binary: str, settings: Settings, output: IO[bytes] | None) -> None:
        """``output``: where HAProxy's stdout (the access log) and stderr go; None: this process's."""
        self.binary = binary
        self.settings = settings
        self.output = output
        self.api = RuntimeApi(settings.socket)
        self.process: subprocess.Popen[bytes] | None = None
        self.reloads = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        check_config(self.binary, self.settings.config_file)
        if not self.settings.state_file.exists():
            self.settings.state_file.write_text("1\n")  # the format's version line: no server yet
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket.unlink()
        self.process = subprocess.Popen(
            [self.binary, "-W", "-db", "-f", str(self.settings.config_file)],
            stdout=self.output,
            stderr=None,  # its warnings and alerts: with the gateway's own
            start_new_session=True,  # a Ctrl-C meant for the gateway is not HAProxy's
        )
        await self._worker_ready(previous=None)
        log.info("haproxy started", pid=self.process.pid, config=str(self.settings.config_file))

    async def _worker_ready(self, previous: str | None) -> str:
        """Wait until a worker answers on the socket (one other than ``previous``); its pid."""
        deadline = time.monotonic() + READY_S
        while True:
            if not self.running:
                raise HaproxyError(f"haproxy exited with code {self.process.returncode if self.process else '?'}")
            try:
                pid = (await self.api.info()).get("Pid", "")
                if pid and pid != previous:
                    return pid
            except RuntimeApiError:
                pass
            if time.monotonic() > deadline:
                raise HaproxyError(f"haproxy's worker did not answer on {self.settings.socket} within {READY_S:.0f} s")
            await asyncio.sleep(0.05)

    async def reload(self) -> None:
        """Take the config file as it is now, keeping every server's state."""
        assert self.process is not None
        check_config(self.binary, self.settings.config_file)
        previous = (await self.api.info()).get("Pid", "")
        state = await self.api.command("show servers state")
        self.settings.state_file.write_text(state)
        self.process.send_signal(signal.SIGUSR2)
        pid = await self._worker_ready(previous)
        self.reloads += 1
        log.info("haproxy reloaded", worker=pid, reloads=self.reloads)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Soft stop (no new connections, the open ones may finish), then a hard one."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGUSR1, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig) if sig is signal.SIGKILL else process.send_signal(sig)
            deadline = time.monotonic() + wait
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is not None:
                break
        log.info("haproxy stopped", code=process.returncode)
