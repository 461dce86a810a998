"""Check GPU pinning and GPU metrics on a machine with NVIDIA GPUs.

Starts aiges with one worker per GPU ([worker] gpus = "auto") serving a torch wrapper, calls it
until every worker has answered, and checks that each worker sees exactly one GPU (its own:
CUDA_VISIBLE_DEVICES differs per worker and torch.cuda.device_count() is 1), that a CUDA matmul
runs, and that /metrics carries utilisation and memory for every GPU. Where no GPU exists it says
so and exits 0 without pretending.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from aiges.gpu import GpuStats, discover_gpus

    gpus = discover_gpus()
    if not gpus:
        print("gpu_check: no NVIDIA GPU here (NVML found none); nothing to check")
        return 0
    print(f"gpu_check: {len(gpus)} GPU(s): {[d['name'] for d in GpuStats().read()]}")
    port, metrics_port = free_port(), free_port()
    config = Path(tempfile.mkdtemp()) / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n[aiges]\nwrapper = "{ROOT / "scripts" / "gpu_check"}"\n'
        f'[worker]\ncount = 0\ngpus = "auto"\nexec_timeout_ms = 120000\n[metrics]\nport = {metrics_port}\n'
        '[log]\nformat = "json"\n'
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "aiges", "serve", "-c", str(config)], env=env, start_new_session=True
    )
    failures: list[str] = []
    try:
        from aiges.client import Client

        wait_serving(f"127.0.0.1:{port}", server)
        seen: dict[str, dict] = {}
        with Client(f"127.0.0.1:{port}", timeout=120) as client, ThreadPoolExecutor(2 * len(gpus)) as pool:
            deadline = time.monotonic() + 60
            while len(seen) < len(gpus) and time.monotonic() < deadline:
                for result in pool.map(lambda _: client.once({"go": b"1"}, expect=["probe"]), range(4 * len(gpus))):
                    probe = json.loads(result["probe"])
                    seen[probe["worker"]] = probe
        for worker, probe in sorted(seen.items()):
            print(f"  worker {worker}: {probe}")
            if probe["device_count"] != 1:
                failures.append(f"worker {worker} sees {probe['device_count']} GPUs, expected 1")
            if not probe["matmul_finite"]:
                failures.append(f"worker {worker}: the CUDA matmul gave a non-finite result")
        visible = sorted(p["cuda_visible_devices"] for p in seen.values())
        if len(seen) != len(gpus):
            failures.append(f"{len(seen)} of {len(gpus)} workers answered")
        if visible != sorted(gpus):
            failures.append(f"workers saw CUDA_VISIBLE_DEVICES {visible}, expected one each of {sorted(gpus)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        gpu_lines = [line for line in metrics.splitlines() if line.startswith("aiges_gpu_")]
        print("  " + "\n  ".join(gpu_lines))
        for family in ("aiges_gpu_utilization_ratio", "aiges_gpu_memory_used_bytes", "aiges_gpu_memory_total_bytes"):
            count = sum(1 for line in gpu_lines if line.startswith(family + "{"))
            if count != len(gpus):
                failures.append(f"/metrics has {count} {family} samples, expected {len(gpus)}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(60)
        if code != 0:
            failures.append(f"aiges exited with {code} on SIGTERM")
    for failure in failures:
        print(f"gpu_check: FAIL {failure}")
    print("gpu_check: OK" if not failures else "gpu_check: FAILED")
    return 1 if failures else 0


def wait_serving(address: str, server: subprocess.Popen) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 300
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"aiges exited with {server.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise SystemExit("aiges did not become SERVING")


if __name__ == "__main__":
    sys.exit(main())
