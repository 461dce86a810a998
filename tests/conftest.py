"""Fixtures: real ``aiges serve`` processes on free ports, talked to with real gRPC clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.client import Client
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

ROOT = Path(__file__).resolve().parent.parent
WRAPPERS = Path(__file__).resolve().parent / "wrappers"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_status(address: str, service: str = "", timeout: float = 2.0) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
        return reply.status


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class Server:
    """One ``aiges serve`` subprocess with its own config file and log."""

    def __init__(self, workdir: Path, wrapper: str | Path, **options) -> None:
        self.workdir = workdir
        self.port = options.pop("port", None) or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config_path = workdir / f"aiges-{self.port}.toml"
        self.log_path = workdir / f"aiges-{self.port}.log"
        config = options.pop("config", None)
        self.config_path.write_text(config if config is not None else render_config(wrapper, self.port, **options))
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiges", "serve", "-c", str(self.config_path), *extra_args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        if wait:
            self.wait_serving(timeout)
        return self

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The server's process, once started."""
        if self.process is None:
            raise AssertionError("the server has not been started")
        return self.process

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"server exited with {self.popen.returncode}:\n{self.log()}")
            if health_status(self.address, timeout=1.0) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
        raise AssertionError(f"server not SERVING within {timeout}s:\n{self.log()}")

    def client(self, **kwargs) -> Client:
        return Client(self.address, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict:
        """The server's ``cmdserver`` status (licences, sessions, workers...)."""
        with grpc.insecure_channel(self.address) as channel:
            reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
        return json.loads(reply.body)

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
        return self.process.returncode


def render_config(
    wrapper: str | Path,
    port: int,
    *,
    workers: int = 1,
    gpus: str = "",
    exec_timeout_ms: int = 30000,
    licences: int = 100,
    ttl: int = 15000,
    maxmb: int = 16,
    wrapper_config: dict[str, str] | None = None,
    extra: str = "",
    service: str = "svcName",
    metrics_port: int = 0,
    shm_mb: int = 64,
    min_ready: int = 0,
    drain_timeout_ms: int = 10000,
    log_level: str = "info",
    async_mode: bool = False,
    fc_extra: str = "",
    worker_extra: str = "",
) -> str:
    wrapper_path = Path(wrapper)
    if not wrapper_path.is_absolute():
        wrapper_path = WRAPPERS / wrapper_path
    lines = [
        f"[{service}]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"maxreceive = {maxmb}",
        f"maxsend = {maxmb}",
        "[aiges]",
        f'wrapper = "{wrapper_path}"',
        f"drain_timeout_ms = {drain_timeout_ms}",
        f"asyncMode = {'true' if async_mode else 'false'}",
        "[worker]",
        f"count = {workers}",
        f'gpus = "{gpus}"',
        f"exec_timeout_ms = {exec_timeout_ms}",
        f"shm_mb = {shm_mb}",
        f"min_ready = {min_ready}",
        worker_extra,
        "[fc]",
        f"max = {licences}",
        f"ttl = {ttl}",
        "roll = 100",
        fc_extra,
        "[log]",
        f'level = "{log_level}"',
        'format = "json"',
        "[metrics]",
        f"port = {metrics_port}",
        "[wrapper]",
    ]
    for key, value in (wrapper_config or {}).items():
        lines.append(f'"{key}" = "{value}"')
    return "\n".join(lines) + "\n" + extra + "\n"


def require_tool(name: str) -> str:
    """A system tool the test needs; CI installs them all (AIGES_REQUIRE_TOOLS=1 makes a missing
    one a failure instead of a skip)."""
    import shutil

    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("AIGES_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def etcd(tmp_path):
    """A real etcd on free ports, in a scratch data dir; yields its client endpoint."""
    binary = require_tool("etcd")
    client_port, peer_port = free_port(), free_port()
    endpoint = f"127.0.0.1:{client_port}"
    log = open(tmp_path / "etcd.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            binary,
            "--name",
            "test",
            "--data-dir",
            str(tmp_path / "etcd-data"),
            "--listen-client-urls",
            f"http://{endpoint}",
            "--advertise-client-urls",
            f"http://{endpoint}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"test=http://127.0.0.1:{peer_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"http://{endpoint}/health", timeout=1) as reply:
                if b"true" in reply.read():
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise AssertionError(f"etcd did not start:\n{(tmp_path / 'etcd.log').read_text()}")
        time.sleep(0.1)
    yield endpoint
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture
def serve(tmp_path):
    """Start servers: ``serve("faulty", workers=2)``; all are stopped after the test."""
    servers: list[Server] = []

    def start(wrapper: str | Path, wait: bool = True, timeout: float = 60.0, **options) -> Server:
        server = Server(tmp_path, wrapper, **options)
        servers.append(server)
        return server.start(wait=wait, timeout=timeout)

    yield start
    for server in servers:
        server.stop()
