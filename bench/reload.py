"""Reload figures: one-shot calls under closed-loop load (``aiges xtest``) across ``aiges reload``.

    .venv/bin/python bench/reload.py [--workers 2] [--concurrency 8] [--seconds 12] [--delay-ms 5]

It starts its own ``aiges serve`` of the hot-word test wrapper (``tests/wrappers/hotwords``,
``[wrapper] mark = "v1"``), runs xtest against it, and a third of the way in rewrites the config
to ``mark = "v2"`` and runs ``aiges reload``. It prints the calls sent and failed over the whole
run, and the calls that started while the reload ran (from the reload command until the old
workers had stopped) with their p50 / p99, beside the same figures for the calls before it.
Latencies are xtest's (the client's), from its ``--calls`` log; CLOCK_MONOTONIC is shared
between the processes, so the reload's window and the calls' start times are on one clock.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from common import ROOT, free_port, wait_serving

from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

WRAPPER = ROOT / "tests" / "wrappers" / "hotwords"


def config_text(port: int, workers: int, delay_ms: int, mark: str) -> str:
    return (
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[aiges]\nwrapper = "{WRAPPER}"\ndrain_timeout_ms = 30000\n[worker]\ncount = {workers}\ngpus = ""\n'
        f'[fc]\nmax = 1000\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n'
        f'[wrapper]\nmark = "{mark}"\ndelay_ms = "{delay_ms}"\n'
    )


def retiring(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
    return int(json.loads(reply.body)["reload"]["retiring_workers"])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)] if ordered else 0.0


def summary(name: str, calls: list[dict]) -> str:
    failed = sum(1 for call in calls if call["code"] is not None)
    latencies = [call["ms"] for call in calls]
    return (
        f"{name:<16} calls {len(calls):>6}  failed {failed:>3}  "
        f"p50 {percentile(latencies, 50):7.2f} ms  p99 {percentile(latencies, 99):7.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--delay-ms", type=int, default=5, help="the wrapper's time per call")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="aiges-reload-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = folder / "aiges.toml"
    config.write_text(config_text(port, args.workers, args.delay_ms, "v1"))
    aiges = [sys.executable, "-m", "aiges"]
    server = subprocess.Popen(
        [*aiges, "serve", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    calls_path, report_path = folder / "calls.jsonl", folder / "report.json"
    try:
        wait_serving(address, server)
        xtest = [*aiges, "xtest", "--addr", address, "--input", "audio=a gees", "--expect", "transcript"]
        xtest += ["--expect", "who", "--concurrency", str(args.concurrency), "--duration", str(args.seconds)]
        load = subprocess.Popen(
            [*xtest, "--json", str(report_path), "--calls", str(calls_path)], stdout=subprocess.DEVNULL
        )
        time.sleep(args.seconds / 3)
        config.write_text(config_text(port, args.workers, args.delay_ms, "v2"))
        began = time.monotonic()
        reloaded = subprocess.run([*aiges, "reload", "--addr", address, "--json"], capture_output=True, text=True)
        ready = time.monotonic()
        while retiring(address):
            time.sleep(0.01)
        ended = time.monotonic()
        load.wait(args.seconds + 60)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    answer = json.loads(reloaded.stdout)
    lines = [json.loads(line) for line in calls_path.read_text().splitlines()]
    start = lines[0]["start_monotonic"]
    calls = [line for line in lines[1:] if "ms" in line]
    window = (began - start, ended - start)
    report = json.loads(report_path.read_text())
    print(f"reload: {answer}")
    print(
        f"the reload command took {(ready - began) * 1000:.0f} ms (new workers ready); "
        f"the old workers stopped {(ended - began) * 1000:.0f} ms after it began"
    )
    print(summary("whole run", calls))
    print(summary("before reload", [c for c in calls if c["t"] < window[0]]))
    print(summary("during reload", [c for c in calls if window[0] <= c["t"] < window[1]]))
    print(summary("after reload", [c for c in calls if c["t"] >= window[1]]))
    print(f"xtest: requests {report['requests']}, errors {report['errors']}, p99 {report['latency_ms']['p99']:.2f} ms")
    return 0 if answer.get("ok") and report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
