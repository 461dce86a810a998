"""Fronts across cores: one aiges front against two on the same port (``[svcName] reuseport``).

    .venv/bin/python bench/multi_front.py [--seconds 5] [--repeats 3] [--connections 8]

Each front is an ``aiges serve`` of the echo demo with one worker; the two-front case starts two
of them on one port with ``reuseport = true`` and the kernel spreads h2load's connections over
them (SO_REUSEPORT hashes each connection to one listener). The load is h2load, ``-c
CONNECTIONS -m 8`` 1 KiB xsf calls.

Each front is held to a core of its own with its worker (front i on core i: a front and its
worker on different cores ping-pong across them and cost about twice the CPU per call), and
h2load is not pinned. On a 2-core machine the load generator needs a core too, so the CPU each
side used is counted (the servers' over all their processes: fronts and workers). The figures that carry to a bigger
machine are the server CPU per call (what one call costs, however many fronts) and the calls per
second per server core; a front-bound host of N cores then serves about N x that.

Every run is checked by the size of its replies (h2load counts gRPC errors as successes), and
each front's share of the calls is read from its own ``/metrics``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import MALLOC_ENV, ROOT, free_port, tree_cpu_seconds, wait_serving

sys.path.insert(0, str(ROOT / "bench"))
from run import xsf_body, xsf_check  # noqa: E402

IN_FLIGHT_PER_CONNECTION = 8
PATH = "/utils.XsfCall/call"


@dataclass
class Front:
    process: subprocess.Popen
    metrics_port: int


def start_front(port: int, reuseport: bool, cpu: int) -> Front:
    metrics_port = free_port()
    config = Path(tempfile.mkdtemp(prefix="aiges-bench-")) / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\nreuseport = {str(reuseport).lower()}\n'
        f'[aiges]\nwrapper = "{ROOT / "demo" / "echo"}"\n[worker]\ncount = 1\ngpus = ""\n'
        f'[fc]\nmax = 1000\n[metrics]\nhost = "127.0.0.1"\nport = {metrics_port}\n[log]\nlevel = "warning"\n'
    )
    process = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "aiges", "serve", "-c", str(config)],
        env={**os.environ, **MALLOC_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Front(process, metrics_port)


def stop_front(front: Front) -> None:
    if front.process.poll() is None:
        os.killpg(front.process.pid, signal.SIGTERM)
        try:
            front.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(front.process.pid, signal.SIGKILL)
            front.process.wait()


def calls_served(front: Front) -> float:
    """The xsf calls this front answered with success, from its own /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{front.metrics_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for labels, value in re.findall(r"^aiges_requests_total\{([^}]*)\} (\S+)", text, re.M):
        if 'front="xsf"' in labels and 'code="0"' in labels:
            total += float(value)
    return total


def wait_metrics(front: Front, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if front.process.poll() is not None:
            raise SystemExit(f"a front exited with {front.process.returncode}")
        try:
            calls_served(front)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"a front's /metrics never answered on port {front.metrics_port}")


@dataclass
class Sample:
    rate: float
    server_cpu: float  # percent of one core, all fronts and workers together
    client_cpu: float
    shares: list[float]


def h2load(address: str, body: Path, reply_size: int, connections: int, count: int | None, seconds: float) -> tuple:
    budget = ["-n", str(count)] if count else ["-D", str(seconds)]
    command = [
        "h2load",
        *budget,
        "-c",
        str(connections),
        "-m",
        str(IN_FLIGHT_PER_CONNECTION),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        str(body),
        f"http://{address}{PATH}",
    ]
    began = time.perf_counter()
    child = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - began
    out = child.stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    data = re.search(r"traffic: .*?, [\d.]+\w* \((\d+)\) data", out)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not (done and data and rate):
        raise SystemExit(f"cannot read h2load output:\n{out}")
    total, succeeded = int(done.group(1)), int(done.group(3))
    per_reply = int(data.group(1)) / max(succeeded, 1)
    if succeeded != total or abs(per_reply - reply_size) > 16:
        raise SystemExit(f"replies look wrong ({succeeded}/{total} ok, {per_reply:.0f} bytes each):\n{out}")
    return float(rate.group(1)), elapsed


def measure(fronts: list[Front], address: str, body: Path, reply_size: int, connections: int, seconds: float) -> Sample:
    warm_rate, _ = h2load(address, body, reply_size, connections, None, 1)
    count = max(int(warm_rate * seconds), 200)
    before_calls = [calls_served(front) for front in fronts]
    before_server = sum(tree_cpu_seconds(front.process.pid) for front in fronts)
    before_client = os.times()
    rate, elapsed = h2load(address, body, reply_size, connections, count, seconds)
    after_client = os.times()
    server = sum(tree_cpu_seconds(front.process.pid) for front in fronts) - before_server
    client = (after_client.children_user + after_client.children_system) - (
        before_client.children_user + before_client.children_system
    )
    served = [calls_served(front) - before for front, before in zip(fronts, before_calls, strict=True)]
    return Sample(rate, 100 * server / elapsed, 100 * client / elapsed, [s / max(sum(served), 1) for s in served])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    body = Path(tempfile.mkdtemp(prefix="multi-front-")) / "xsf-1024.bin"
    xsf_body(1024, body)
    results: dict[int, list[Sample]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for count in (1, 2):
            port = free_port()
            fronts = [start_front(port, reuseport=True, cpu=i % (os.cpu_count() or 1)) for i in range(count)]
            address = f"127.0.0.1:{port}"
            try:
                for front in fronts:
                    wait_serving(address, front.process)
                    wait_metrics(front)  # the port's health may come from another front
                # Every front answers on the port before the load starts: new connections land
                # on each listener once it is bound, so wait until each has served a call.
                reply_size = xsf_check(address, 1024)
                deadline = time.monotonic() + 60
                while count > 1 and min(calls_served(f) for f in fronts) == 0:
                    if time.monotonic() > deadline:
                        raise SystemExit("a front never got a connection")
                    xsf_check(address, 1024)
                sample = measure(fronts, address, body, reply_size, args.connections, args.seconds)
                results[count].append(sample)
                print(
                    f"  [{repeat + 1}/{args.repeats}] {count} front(s): {sample.rate:7.0f} req/s, "
                    f"servers {sample.server_cpu:3.0f}% CPU, h2load {sample.client_cpu:3.0f}%, "
                    f"split {' / '.join(f'{s:.0%}' for s in sample.shares)}",
                    file=sys.stderr,
                    flush=True,
                )
            finally:
                for front in fronts:
                    stop_front(front)

    print(
        f"\n1 KiB xsf echo, h2load -c {args.connections} -m {IN_FLIGHT_PER_CONNECTION}, front i and its worker on "
        f"core i, h2load free ({os.cpu_count()} cores); median of {args.repeats}"
    )
    header = (
        f"{'fronts':<7} {'req/s':>8} {'x 1 front':>9} {'server CPU':>10} {'h2load CPU':>10} "
        f"{'server us/call':>14} {'req/s per server core':>21}  split"
    )
    print(header)
    print("-" * len(header))
    base = statistics.median(s.rate for s in results[1])
    for count, samples in results.items():
        rate = statistics.median(s.rate for s in samples)
        server = statistics.median(s.server_cpu for s in samples)
        client = statistics.median(s.client_cpu for s in samples)
        cost = statistics.median(s.server_cpu / 100 / s.rate * 1e6 for s in samples)
        middle = sorted(samples, key=lambda s: s.rate)[len(samples) // 2]
        print(
            f"{count:<7} {rate:>8.0f} {rate / base:>9.2f} {server:>9.0f}% {client:>9.0f}% {cost:>14.0f} "
            f"{1e6 / cost:>21.0f}  {' / '.join(f'{s:.0%}' for s in middle.shares)}"
        )


if __name__ == "__main__":
    main()
