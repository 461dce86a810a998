"""Side-by-side benchmark: the ceiling, aiges (1 and 2 workers), MLServer and PyTriton, in one run.

    .venv/bin/python bench/run.py [--quick] [--no-mlserver] [--no-pytriton] [--out bench/RESULTS.md]

The peers run from their own venvs under bench/.work (made on first use): MLServer 1.7.1 needs
protobuf < 7; PyTriton 0.7.0 (Triton's C++ server in its wheel, a Python callable behind it,
batching off) is installed on Debian's /usr/bin/python3 where there is one, since the Python
backend stub it ships fails on other 3.11 builds (pyenv's 3.11.7: ``'_thread.RLock' object has
no attribute '_recursion_count'``). Each server's processes and threads (the server and all its
descendants: aiges's workers run in sessions of their own) are counted once it is warm; all of
them inherit the server's CPU pinning.

Every server is driven by the same load generator, h2load (Debian ``nghttp2-client``), sending
gRPC unary calls with a pre-framed body. Servers are held to CPU 0 and h2load to CPU 1
(``taskset``), with the same glibc malloc settings, so each server gets one core of this 2-core
machine; the scheduling policy of the server processes is recorded per row (aiges switches its
own processes to SCHED_BATCH, see [aiges] sched_batch; the ceiling is measured both ways).

h2load counts a gRPC error as a success (the status travels in the trailers of an HTTP 200), so
each server is first checked with a real client, and every run is checked by the size of the
replies it received.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from common import tree_tasks, wait_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
MLSERVER_VENV = WORK / "mlserver-venv"
PYTRITON_VENV = WORK / "pytriton-venv"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
SIZES = {"1 KiB": 1024, "1 MiB": 1 << 20}
SWEEP = (1, 4, 16, 64)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    name: str
    command: list[str]
    path: str
    bodies: dict[int, Path] = field(default_factory=dict)
    reply_sizes: dict[int, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    port: int = 0
    process: subprocess.Popen | None = None
    policy: str = "SCHED_OTHER"
    tools: list[str] = field(default_factory=list)  # a peer's own helper (body / ready / check)
    processes: int = 0
    threads: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def xsf_body(size: int, path: Path) -> None:
    from aiges.client.values import loader_input
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import DataMeta, ReqData

    message = loader_input(state=LoaderInput.ONCE, inputs={"text": b"x" * size}, expect=["text"], status=3)
    request = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
    raw = request.SerializeToString()
    path.write_bytes(b"\x00" + struct.pack(">I", len(raw)) + raw)


def xsf_check(address: str, size: int) -> int:
    """One real call; returns the framed size of the reply h2load will receive."""
    from aiges.client import Client

    with Client(address) as client:
        payload = os.urandom(size)
        result = client.once({"text": payload}, expect=["text"])
        if result["text"] != payload:
            raise SystemExit(f"{address}: the echo reply does not hold the payload")
    from aiges.client.values import loader_input
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import DataMeta, ReqData

    message = loader_input(state=LoaderInput.ONCE, inputs={"text": b"x" * size}, expect=["text"], status=3)
    request = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
    with grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        call = channel.unary_unary("/utils.XsfCall/call", request_serializer=None, response_deserializer=None)
        return len(call(request.SerializeToString(), timeout=30)) + 5


def aiges_config(port: int, workers: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="aiges-bench-")) / "aiges.toml"
    path.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\nmaxreceive = 64\nmaxsend = 64\n'
        f'[aiges]\nwrapper = "{ROOT / "demo" / "echo"}"\n'
        f'[worker]\ncount = {workers}\ngpus = ""\n[fc]\nmax = 1000\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n'
    )
    return path


def wait_health(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            time.sleep(0.1)
    raise SystemExit(f"{address}: not serving after {timeout}s")


def policy_of(pid: int) -> str:
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH"}
    with contextlib.suppress(OSError):
        return names.get(os.sched_getscheduler(pid), str(os.sched_getscheduler(pid)))
    return "?"


def start(server: Server, server_cpus: str) -> None:
    server.process = subprocess.Popen(
        ["taskset", "-c", server_cpus, *server.command],
        cwd=server.cwd,
        env={**os.environ, **MALLOC_ENV, **server.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


@dataclass
class Sample:
    rps: float
    p50_us: float
    p99_us: float
    bytes_per_reply: float


def h2load_run(server: Server, size: int, in_flight: int, client_cpus: str, budget: list[str], log: Path | None = None):
    command = [
        "taskset",
        "-c",
        client_cpus,
        "h2load",
        *budget,
        "-c",
        "1",
        "-m",
        str(in_flight),
        *(["--log-file", str(log)] if log else []),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        str(server.bodies[size]),
        f"http://{server.address}{server.path}",
    ]
    out = run(command, timeout=600).stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    data = re.search(r"traffic: .*?, [\d.]+\w* \((\d+)\) data", out)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not (done and data and rate):
        raise SystemExit(f"cannot read h2load output:\n{out}")
    return out, int(done.group(1)), int(done.group(3)), int(data.group(1)), float(rate.group(1))


def h2load(server: Server, size: int, in_flight: int, seconds: int, client_cpus: str) -> Sample:
    """A 1 s run to warm up and size the measured run, then ``seconds`` worth of calls, checked
    by the size of the replies."""
    _, _, _, _, rate = h2load_run(server, size, in_flight, client_cpus, ["-D", "1"])
    count = max(int(rate * seconds), 100)
    log = Path(tempfile.mktemp(prefix="h2load-", suffix=".log"))
    out, total, succeeded, data, rate = h2load_run(server, size, in_flight, client_cpus, ["-n", str(count)], log)
    per_reply = data / max(succeeded, 1)
    expected = server.reply_sizes[size]
    if succeeded != total or abs(per_reply - expected) > max(0.02 * expected, 16):
        raise SystemExit(
            f"{server.name}: replies look wrong ({succeeded}/{total} ok, {per_reply:.0f} bytes each, "
            f"expected {expected}):\n{out}"
        )
    durations = sorted(int(line.split()[2]) for line in log.read_text().splitlines() if line.strip())
    log.unlink()
    return Sample(
        rps=rate,
        p50_us=durations[len(durations) // 2],
        p99_us=durations[min(int(len(durations) * 0.99), len(durations) - 1)],
        bytes_per_reply=per_reply,
    )


def median_sample(samples: list[Sample]) -> Sample:
    ordered = sorted(samples, key=lambda s: s.rps)
    middle = ordered[len(ordered) // 2]
    return Sample(statistics.median(s.rps for s in samples), middle.p50_us, middle.p99_us, middle.bytes_per_reply)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, Python {platform.python_version()}"


def ensure_pytriton() -> bool:
    python = PYTRITON_VENV / "bin" / "python"
    if not python.exists():
        base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        print(f"creating PyTriton's venv on {base} (nvidia-pytriton 0.7.0) ...", flush=True)
        run([base, "-m", "venv", str(PYTRITON_VENV)])
        run([str(python), "-m", "pip", "install", "--quiet", "nvidia-pytriton==0.7.0"], timeout=1800)
    return python.exists()


def ensure_mlserver() -> bool:
    python = MLSERVER_VENV / "bin" / "python"
    if not python.exists():
        print("creating MLServer's venv (mlserver 1.7.1 needs protobuf < 7) ...", flush=True)
        run([sys.executable, "-m", "venv", str(MLSERVER_VENV)])
        run([str(python), "-m", "pip", "install", "--quiet", "mlserver==1.7.1", "uvloop<0.22"], timeout=1200)
    return python.exists()


def build_servers(args) -> list[Server]:
    aiges = str(ROOT / ".venv" / "bin" / "aiges")
    python = sys.executable
    servers = [
        Server("ceiling (grpc.aio)", [python, str(BENCH / "ceiling.py"), "--port", "{port}"], "/utils.XsfCall/call"),
        Server(
            "ceiling, SCHED_BATCH",
            ["chrt", "-b", "0", python, str(BENCH / "ceiling.py"), "--port", "{port}"],
            "/utils.XsfCall/call",
        ),
        Server("aiges, 1 worker", [aiges, "serve", "-c", "{config1}"], "/utils.XsfCall/call"),
        Server("aiges, 2 workers", [aiges, "serve", "-c", "{config2}"], "/utils.XsfCall/call"),
    ]
    if not args.no_mlserver and ensure_mlserver():
        servers.append(
            Server(
                "MLServer 1.7.1, parallel_workers=1",
                [str(MLSERVER_VENV / "bin" / "mlserver"), "start", "."],
                "/inference.GRPCInferenceService/ModelInfer",
                cwd=BENCH / "mlserver_echo",
                tools=[str(MLSERVER_VENV / "bin" / "python"), str(BENCH / "mlserver_echo" / "tools.py")],
                env={
                    "MLSERVER_PARALLEL_WORKERS": "1",
                    "MLSERVER_LOGGING_LEVEL": "WARNING",
                    "MLSERVER_HTTP_PORT": str(free_port()),
                    "MLSERVER_METRICS_PORT": str(free_port()),
                },
            )
        )
    if not args.no_pytriton and ensure_pytriton():
        python = str(PYTRITON_VENV / "bin" / "python")
        servers.append(
            Server(
                "PyTriton 0.7.0, batching off",
                [python, str(BENCH / "pytriton_echo" / "serve.py"), "{port}", "{free}", "{free2}"],
                "/inference.GRPCInferenceService/ModelInfer",
                cwd=BENCH / "pytriton_echo",
                tools=[python, str(BENCH / "pytriton_echo" / "tools.py")],
            )
        )
    for server in servers:
        server.port = free_port()
        configs = {
            "port": str(server.port),
            "config1": str(aiges_config(server.port, 1)),
            "config2": str(aiges_config(server.port, 2)),
            "free": str(free_port()),
            "free2": str(free_port()),
        }
        server.command = [part.format(**configs) for part in server.command]
        if server.name.startswith("MLServer"):
            server.env["MLSERVER_GRPC_PORT"] = str(server.port)
    return servers


def prepare(server: Server, sizes: dict[str, int]) -> None:
    body_dir = WORK / "bodies"
    body_dir.mkdir(parents=True, exist_ok=True)
    if server.tools:
        run([*server.tools, "ready", server.address], timeout=240)
        for size in sizes.values():
            server.bodies[size] = body_dir / f"{Path(server.tools[1]).parent.name}-{size}.bin"
            run([*server.tools, "body", str(size), str(server.bodies[size])])
            server.reply_sizes[size] = int(run([*server.tools, "check", server.address, str(size)]).stdout)
        return
    if server.name.startswith("aiges"):
        wait_health(server.address)
    else:
        wait_port(server.address)
    for size in sizes.values():
        server.bodies[size] = body_dir / f"xsf-{size}.bin"
        xsf_body(size, server.bodies[size])
        server.reply_sizes[size] = xsf_check(server.address, size)


def plot(sweep: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(sweep), figsize=(6 * len(sweep), 4.2))
    for axis, (label, rows) in zip(axes if len(sweep) > 1 else [axes], sweep.items(), strict=False):
        for name, rates in rows.items():
            axis.plot(SWEEP, rates, marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(SWEEP, [str(s) for s in SWEEP])
        axis.set_xlabel("calls in flight")
        axis.set_ylabel("requests/s")
        axis.set_title(f"echo, {label} payload, server on 1 core")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 s runs")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--no-pytriton", action="store_true")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    repeats, seconds = (1, 2) if args.quick else (3, 4)
    servers = build_servers(args)
    for server in servers:
        start(server, args.server_cpus)
    try:
        for server in servers:
            prepare(server, SIZES)
            server.policy = policy_of(server.process.pid)
        results: dict[tuple[str, str, int], Sample] = {}
        sweep: dict[str, dict[str, list[float]]] = {}
        for label, size in SIZES.items():
            for in_flight in (64, 1):
                samples: dict[str, list[Sample]] = {s.name: [] for s in servers}
                for repeat in range(repeats):
                    order = servers[repeat % len(servers) :] + servers[: repeat % len(servers)]
                    for server in order:
                        samples[server.name].append(h2load(server, size, in_flight, seconds, args.client_cpus))
                        print(
                            f"{label} x{in_flight:<3} {server.name:38s} {samples[server.name][-1].rps:9.0f} req/s",
                            flush=True,
                        )
                for server in servers:
                    results[(label, server.name, in_flight)] = median_sample(samples[server.name])
            sweep[label] = {}
            for server in servers:
                rates = []
                for in_flight in SWEEP:
                    rates.append(h2load(server, size, in_flight, max(seconds // 2, 1), args.client_cpus).rps)
                sweep[label][server.name] = rates
                print(f"{label} sweep {server.name:38s} {rates}", flush=True)
        for server in servers:
            server.processes, server.threads = tree_tasks(server.process.pid)
    finally:
        for server in servers:
            stop(server)
    plot_path = BENCH / "throughput.png"
    plot(sweep, plot_path)
    write_results(Path(args.out), servers, results, sweep, plot_path, repeats, seconds, args)
    (WORK / "results.json").write_text(
        json.dumps({f"{k[0]}|{k[1]}|{k[2]}": vars(v) for k, v in results.items()}, indent=1)
    )
    print(f"wrote {args.out} and {plot_path}")


def write_results(path: Path, servers, results, sweep, plot_path: Path, repeats: int, seconds: float, args) -> None:
    ceiling = servers[0].name
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Written by `make bench` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"Load generator: h2load, one connection, gRPC unary calls with a pre-framed body; {repeats} "
        f"interleaved repeats of about {seconds} s (each after a 1 s warm-up run) per figure, median shown. "
        f"Servers held to CPU {args.server_cpus}, h2load to CPU {args.client_cpus}; glibc "
        "`MALLOC_MMAP_THRESHOLD_=64MiB MALLOC_TRIM_THRESHOLD_=256MiB` for every server. Every run is checked "
        "by the size of its replies (h2load counts gRPC errors as successes).",
        "",
    ]
    for label in SIZES:
        base64 = results[(label, ceiling, 64)].rps
        base1 = results[(label, ceiling, 1)]
        lines += [
            f"## Echo, {label} payload",
            "",
            "| server | policy | processes / threads | req/s, 64 in flight | MB/s | x ceiling | p50 | p99 "
            "| serial p50 | serial p99 | serial p50 over ceiling |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for server in servers:
            busy = results[(label, server.name, 64)]
            serial = results[(label, server.name, 1)]
            size = SIZES[label]
            lines.append(
                f"| {server.name} | {server.policy} | {server.processes} / {server.threads} "
                f"| {busy.rps:,.0f} | {busy.rps * size / 1e6:,.1f} "
                f"| {busy.rps / base64:.2f} | {busy.p50_us / 1000:.2f} ms | {busy.p99_us / 1000:.2f} ms "
                f"| {serial.p50_us:,.0f} us | {serial.p99_us:,.0f} us | {serial.p50_us - base1.p50_us:+,.0f} us |"
            )
        lines.append("")
    lines += [
        "## Throughput by calls in flight",
        "",
        f"![throughput]({plot_path.name})",
        "",
        "| payload | server | " + " | ".join(f"{n} in flight" for n in SWEEP) + " |",
        "|---|---|" + "---:|" * len(SWEEP),
    ]
    for label, rows in sweep.items():
        for name, rates in rows.items():
            lines.append(f"| {label} | {name} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    lines += [
        "",
        "## Commands",
        "",
        "```sh",
        "make bench        # = .venv/bin/python bench/run.py, then batching, scaling, sessions, fronts, multi_front",
        "```",
        "",
    ]
    for server in servers:
        lines.append(f"- {server.name}: `taskset -c {args.server_cpus} {' '.join(server.command)}`")
    lines.append(
        f"- load: `taskset -c {args.client_cpus} h2load -n COUNT -c 1 -m N "
        "-H 'content-type: application/grpc' -H 'te: trailers' -d BODY http://ADDRESS/PATH` "
        f"(COUNT sized from a 1 s warm-up run to last {seconds} s)"
    )
    lines.append("")
    notes = BENCH / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
