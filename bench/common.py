"""Helpers shared by the benchmark scripts: start an aiges server, drive it closed-loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it. aiges starts its workers in sessions of
    their own, so a session or process group would miss them; parenthood does not."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its descendants (those still running)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def tree_tasks(root: int) -> tuple[int, int]:
    """(processes, threads) of ``root`` and its descendants."""
    processes = threads = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            threads += len(os.listdir(f"/proc/{pid}/task"))
            processes += 1
    return processes, threads


@contextlib.contextmanager
def aiges_server(wrapper: Path, workers: int = 1, extra: str = "", cpus: str | None = None, service: str = ""):
    """An ``aiges serve`` of ``wrapper``; yields its address, stops it afterwards. ``service``:
    more keys of its ``[svcName]`` section."""
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="aiges-bench-")) / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\nmaxreceive = 64\nmaxsend = 64\n{service}\n'
        f'[aiges]\nwrapper = "{wrapper}"\n[worker]\ncount = {workers}\ngpus = ""\n'
        f'[fc]\nmax = 1000\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n{extra}\n'
    )
    command = [sys.executable, "-m", "aiges", "serve", "-c", str(config)]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    process = subprocess.Popen(
        command,
        env={**os.environ, **MALLOC_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, process)
        yield address
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_port(address: str, timeout: float = 30) -> None:
    """Until something accepts connections on HOST:PORT."""
    host, port = address.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit(f"{address}: port never opened")


def wait_serving(address: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"aiges exited with {process.returncode}")
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            time.sleep(0.1)
    raise SystemExit(f"{address} not serving after {timeout}s")


@dataclass
class Load:
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)] if ordered else 0.0


async def closed_loop(
    one: Callable[[], Awaitable[None]], concurrency: int, seconds: float, warmup: float = 1.0
) -> Load:
    """``concurrency`` callers, each calling ``one`` back to back; measured after a warm-up."""
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds
    latencies: list[float] = []

    async def caller() -> None:
        while True:
            began = time.perf_counter()
            if began >= stop:
                return
            await one()
            if began >= measure_from:
                latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Load(len(latencies), time.perf_counter() - measure_from, latencies)
