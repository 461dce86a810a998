"""The servers of ``bench/overload.py``, each serving the sleeping model ``sleep`` over OIP gRPC
with N workers, and logging each execution's start (``bench/start_log.py``):

- aiges: ``bench/wrappers/sleep``, ``[worker] count = N``, ``gpus = ""``, every other key its default
  (only the ports are chosen: the service port and a free metrics port, 9090 may be taken);
- MLServer 1.7.1: ``bench/mlserver_sleep``, ``MLSERVER_PARALLEL_WORKERS=N``;
- PyTriton 0.7.0: ``bench/pytriton_sleep/serve.py``, N instances of the callable, batching off.

The peers' venvs are made under bench/.work on first use (``bench/run.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from common import free_port, process_tree
from run import MLSERVER_VENV, PYTRITON_VENV, ensure_mlserver, ensure_pytriton
from start_log import LOG_ENV, SERVICE_MS_ENV

from aiges.protocol import oip_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODEL = "sleep"


@dataclass
class Server:
    key: str
    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log: Path  # the model's start log
    stdout: Path
    process: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0  # how long the last start took, until the model was ready

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, service_ms: float, timeout: float = 240) -> None:
        began = time.monotonic()
        env = {**os.environ, **self.env, LOG_ENV: str(self.log), SERVICE_MS_ENV: str(service_ms)}
        with self.stdout.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while not model_ready(self.address):
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}; see {self.stdout}")
            if time.monotonic() - began > timeout:
                self.stop()
                raise SystemExit(f"{self.name}: model not ready after {timeout:.0f} s; see {self.stdout}")
            time.sleep(0.2)
        self.started_s = time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL to whatever is left of its tree
        (aiges's workers run in sessions of their own)."""
        process = self.process
        if process is None:
            return
        tree = process_tree(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        self.process = None

    def starts(self) -> list[tuple[float, float]]:
        """(start, sent) of every execution logged so far."""
        if not self.log.exists():
            return []
        starts = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                start_s, sent_s = line.split()
                starts.append((float(start_s), float(sent_s)))
        return starts


def model_ready(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        ready = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        with contextlib.suppress(grpc.RpcError):
            return bool(ready(pb.ModelReadyRequest(name=MODEL), timeout=2).ready)
    return False


def aiges_server(run_dir: Path, workers: int) -> Server:
    port = free_port()
    config = run_dir / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[aiges]\nwrapper = "{BENCH / "wrappers" / "sleep"}"\n'
        f'[worker]\ncount = {workers}\ngpus = ""\n'
        f"[metrics]\nport = {free_port()}\n"
    )
    command = [sys.executable, "-m", "aiges", "serve", "-c", str(config)]
    return Server(
        "aiges", f"aiges, defaults, {workers} workers", command, {}, ROOT, port,
        run_dir / "aiges-starts.log", run_dir / "aiges.out",
    )  # fmt: skip


def mlserver_server(run_dir: Path, workers: int) -> Server:
    ensure_mlserver()
    port = free_port()
    env = {
        "MLSERVER_PARALLEL_WORKERS": str(workers),
        "MLSERVER_GRPC_PORT": str(port),
        "MLSERVER_HTTP_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_LOGGING_LEVEL": "WARNING",
    }
    command = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", "."]
    return Server(
        "mlserver", f"MLServer 1.7.1, {workers} parallel workers", command, env, BENCH / "mlserver_sleep", port,
        run_dir / "mlserver-starts.log", run_dir / "mlserver.out",
    )  # fmt: skip


def pytriton_server(run_dir: Path, workers: int) -> Server:
    ensure_pytriton()
    port = free_port()
    python, serve = str(PYTRITON_VENV / "bin" / "python"), str(BENCH / "pytriton_sleep" / "serve.py")
    command = [python, serve, str(port), str(free_port()), str(free_port()), str(workers)]
    return Server(
        "pytriton", f"PyTriton 0.7.0, {workers} instances", command, {}, BENCH / "pytriton_sleep", port,
        run_dir / "pytriton-starts.log", run_dir / "pytriton.out",
    )  # fmt: skip


BUILDERS: dict[str, Callable[[Path, int], Server]] = {
    "aiges": aiges_server,
    "mlserver": mlserver_server,
    "pytriton": pytriton_server,
}
