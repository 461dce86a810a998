"""Per-core ceilings of Python server fronts: how many tiny unary echo calls per second each front
technology can serve on ONE core, with nothing behind it.

    .venv/bin/python bench/front_ceilings.py [--seconds 5] [--warmup 1] [--repeats 3] [--size 1024]

Fronts, each started as a subprocess of this script (``front_ceilings.py serve FRONT PORT``)
pinned to core 0 with ``taskset -c 0``:

- ``grpc.aio``            grpc.aio server on the default asyncio loop
- ``grpc.aio+uvloop``     the same on uvloop
- ``grpc.aio poll``       grpc.aio with ``GRPC_POLL_STRATEGY=poll`` instead of epoll1
- ``grpc.aio tuned``      grpc.aio with server options (max concurrent streams, pending requests,
                          so_reuseport, bigger flow-control windows)
- ``grpc sync wN``        grpc.server with a ThreadPoolExecutor of N = 1, 4, 16, 64 workers
- ``grpc sync w64 loop``  the sync server's threads hand each call to an asyncio loop (where an
                          engine would live) and block on the answer: the handoff's cost alone
- ``grpc sync w64 loop batched``  the same, handoffs queued and the loop woken once per batch
- ``grpc sync w64 +worker``  the sync server's threads each own a socket to a forked echo
                          worker and block on its reply: the engine driven from the threads
- ``grpc.aio+uvloop +worker``  grpc.aio on uvloop, one socket to a forked echo worker, replies
                          matched by call id: what aiges does, with nothing else
- ``grpc.aio+uvloop +worker batched``  the same, the frames of one loop pass sent to the worker
                          in one write (one worker wake-up for several calls)
- ``aiohttp+uvloop``      aiohttp web server (HTTP/1.1), a POST handler echoing the body

The gRPC fronts register one generic unary-unary handler (``/bench.Echo/Call``) with no
request_deserializer / response_serializer, so the handler gets and returns raw bytes: no
protobuf work. The aiohttp handler reads the body and returns it.

The load generator is h2load (Debian ``nghttp2-client``) pinned to core 1, sending a 1 KiB body
(gRPC: pre-framed with the 5-byte prefix b"\\x00" + 4-byte big-endian length):

- gRPC, 1 connection x 64 streams:  ``h2load -c 1 -m 64 -H 'content-type: application/grpc'
  -H 'te: trailers' -d BODY http://127.0.0.1:PORT/bench.Echo/Call``
- gRPC, 4 connections x 16 streams: the same with ``-c 4 -m 16``
- HTTP/1.1, 64 connections:         ``h2load --h1 -c 64 -m 1 -d BODY http://127.0.0.1:PORT/echo``

Each run is a ``-D WARMUP`` warm-up followed by a measured ``-D SECONDS`` run; the repeats are
interleaved over the fronts (each front is restarted per repeat) and the median req/s is
reported with its ratio to grpc.aio (1 x 64). A run counts only if h2load's "succeeded" equals
"done" and the bytes received per reply match an echo of the body (h2load counts a gRPC error as
a success, since its status travels in the trailers of an HTTP 200); each front is also checked
with one real client call before it is loaded. The CPU columns give the server's and h2load's
CPU use over the measured run (100% = one core), to show the server core was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVER_CPU = "0"
CLIENT_CPU = "1"
GRPC_PATH = "/bench.Echo/Call"
HTTP_PATH = "/echo"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
FRONTS = (
    "grpc.aio",
    "grpc.aio+uvloop",
    "grpc.aio poll",
    "grpc.aio tuned",
    "grpc sync w1",
    "grpc sync w4",
    "grpc sync w16",
    "grpc sync w64",
    "grpc sync w64 loop",
    "grpc sync w64 loop batched",
    "grpc sync w64 +worker",
    "grpc.aio+uvloop +worker",
    "grpc.aio+uvloop +worker batched",
    "aiohttp+uvloop",
)
SHAPES = {
    "grpc": (("1 conn x 64", ["-c", "1", "-m", "64"]), ("4 conn x 16", ["-c", "4", "-m", "16"])),
    "http": (("64 conn (h1)", ["--h1", "-c", "64", "-m", "1"]),),
}


# ---------------------------------------------------------------------------------------- servers


def serve(front: str, port: int) -> None:
    address = f"127.0.0.1:{port}"
    if "+worker" in front:
        serve_with_worker(address, threaded=front.startswith("grpc sync"), batched=front.endswith("batched"))
    elif front.startswith("grpc sync w64 loop"):
        serve_grpc_sync_handoff(address, 64, batched=front.endswith("batched"))
    elif front.startswith("grpc sync"):
        serve_grpc_sync(address, int(front.rsplit("w", 1)[1]))
    elif front.startswith("grpc.aio"):
        if front.endswith("+uvloop"):
            import uvloop

            uvloop.install()
        options = TUNED_OPTIONS if front.endswith("tuned") else ()
        asyncio.run(serve_grpc_aio(address, options))
    elif front == "aiohttp+uvloop":
        serve_aiohttp(port)
    else:
        raise SystemExit(f"unknown front {front!r}")


def serve_grpc_sync(address: str, workers: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    def echo(request: bytes, context) -> bytes:
        return request

    server = grpc.server(ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def serve_grpc_sync_handoff(address: str, workers: int, batched: bool) -> None:
    """The sync server's threads hand each call to an asyncio loop in another thread (where an
    engine would run) and block for its answer: the handoff's cost, alone. ``batched``: calls
    queued while the loop is already scheduled share one wake-up."""
    import collections
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def engine(request: bytes) -> bytes:
        return request

    class Waiter:
        __slots__ = ("lock", "value")

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.lock.acquire()
            self.value = b""

    pending: collections.deque[tuple[bytes, Waiter]] = collections.deque()
    guard = threading.Lock()
    scheduled = False

    def answered(waiter: Waiter, task: asyncio.Task) -> None:
        waiter.value = task.result()
        waiter.lock.release()

    def drain() -> None:
        nonlocal scheduled
        with guard:
            calls = list(pending)
            pending.clear()
            scheduled = False
        for request, waiter in calls:
            loop.create_task(engine(request)).add_done_callback(functools.partial(answered, waiter))

    def echo_batched(request: bytes, context) -> bytes:
        nonlocal scheduled
        waiter = Waiter()
        with guard:
            pending.append((request, waiter))
            wake = not scheduled
            scheduled = True
        if wake:
            loop.call_soon_threadsafe(drain)
        waiter.lock.acquire()
        return waiter.value

    def echo(request: bytes, context) -> bytes:
        return asyncio.run_coroutine_threadsafe(engine(request), loop).result()

    server = grpc.server(ThreadPoolExecutor(max_workers=workers), maximum_concurrent_rpcs=None)
    handler = grpc.unary_unary_rpc_method_handler(echo_batched if batched else echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler}),))
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def serve_with_worker(address: str, threaded: bool, batched: bool = False) -> None:
    """The least a front with a worker process can cost: each call's bytes go to a forked echo
    process over a socket and back. ``threaded``: the sync server, each of its 64 threads with its
    own socket, blocking on its answer (the engine driven from those threads, no event loop);
    otherwise grpc.aio on uvloop with one socket and calls matched by a 4-byte id."""
    pairs = [socket.socketpair() for _ in range(64 if threaded else 1)]
    if os.fork() == 0:
        for ours, _ in pairs:
            ours.close()
        echo_worker([theirs for _, theirs in pairs])
        os._exit(0)
    for _, theirs in pairs:
        theirs.close()
    if threaded:
        serve_sync_to_worker(address, [ours for ours, _ in pairs])
    else:
        import uvloop

        uvloop.install()
        asyncio.run(serve_aio_to_worker(address, pairs[0][0], batched))


def echo_worker(channels: list[socket.socket]) -> None:
    """Reads length-prefixed frames from every channel and writes each back: one pass answers
    every frame that is ready, in one send per channel."""
    import selectors

    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    for channel in channels:
        selector.register(channel, selectors.EVENT_READ)
        buffers[channel] = bytearray()
    while True:
        for key, _ in selector.select():
            channel = key.fileobj
            chunk = channel.recv(1 << 20)
            if not chunk:
                return
            buffer = buffers[channel]
            buffer += chunk
            out = bytearray()
            while len(buffer) >= 8:
                size = struct.unpack_from(">I", buffer, 4)[0]
                if len(buffer) < 8 + size:
                    break
                out += buffer[: 8 + size]
                del buffer[: 8 + size]
            if out:
                channel.sendall(out)


def serve_sync_to_worker(address: str, channels: list[socket.socket]) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    free = list(channels)
    local = threading.local()

    def echo(request: bytes, context) -> bytes:
        channel = getattr(local, "channel", None)
        if channel is None:
            channel = local.channel = free.pop()
        channel.sendall(struct.pack(">II", 0, len(request)) + request)
        head = channel.recv(8, socket.MSG_WAITALL)
        return channel.recv(struct.unpack(">II", head)[1], socket.MSG_WAITALL)

    server = grpc.server(ThreadPoolExecutor(max_workers=len(channels)))
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler}),))
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


async def serve_aio_to_worker(address: str, channel: socket.socket, batched: bool) -> None:
    import grpc

    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[bytes]] = {}
    ids = iter(range(1 << 62))

    class Replies(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer
            buffer += data
            while len(buffer) >= 8:
                call, size = struct.unpack_from(">II", buffer)
                if len(buffer) < 8 + size:
                    break
                answer = waiting.pop(call)
                if not answer.done():  # a call the client cancelled is answered to no one
                    answer.set_result(bytes(buffer[8 : 8 + size]))
                del buffer[: 8 + size]

    transport, _ = await loop.connect_accepted_socket(Replies, channel)

    pending: list[bytes] = []

    def flush() -> None:
        transport.write(b"".join(pending))
        pending.clear()

    async def echo(request: bytes, context) -> bytes:
        call = next(ids) & 0xFFFFFFFF
        waiting[call] = answer = loop.create_future()
        frame = struct.pack(">II", call, len(request)) + request
        if not batched:
            transport.write(frame)
        else:
            if not pending:
                loop.call_soon(flush)
            pending.append(frame)
        return await answer

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler}),))
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


# grpc core's server options that bear on per-call cost (``grpc.aio tuned``)
TUNED_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 1024),
    ("grpc.server.max_pending_requests", 65536),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.optimization_target", "throughput"),
)


async def serve_grpc_aio(address: str, options: tuple[tuple[str, object], ...] = ()) -> None:
    import grpc

    async def echo(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def serve_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    uvloop.install()
    app = web.Application()
    app.router.add_post(HTTP_PATH, echo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ---------------------------------------------------------------------------------------- driver


@dataclass
class Front:
    name: str
    kind: str  # "grpc" or "http"
    port: int = 0
    process: subprocess.Popen | None = None
    log: object = None
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{GRPC_PATH if self.kind == 'grpc' else HTTP_PATH}"


RUNNING: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(front: Front) -> None:
    front.port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in main() when the server stops
    front.process = subprocess.Popen(
        [
            "taskset",
            "-c",
            SERVER_CPU,
            sys.executable,
            str(Path(__file__).resolve()),
            "serve",
            front.name,
            str(front.port),
        ],
        env={**os.environ, **MALLOC_ENV, **({"GRPC_POLL_STRATEGY": "poll"} if front.name.endswith(" poll") else {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    front.log = log
    RUNNING.append(front.process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if front.process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{front.name} exited with {front.process.returncode}:\n{log.read().decode()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", front.port), timeout=1):
            return
        time.sleep(0.05)
    raise SystemExit(f"{front.name}: port {front.port} never opened")


def stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process in RUNNING:
        RUNNING.remove(process)


def check(front: Front) -> None:
    """One real call, so a broken front cannot pass as fast."""
    payload = os.urandom(1024)
    if front.kind == "grpc":
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{front.port}") as channel:
            reply = channel.unary_unary(GRPC_PATH)(payload, timeout=10)
    else:
        request = urllib.request.Request(front.url, data=payload, headers={"content-type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = response.read()
    if reply != payload:
        raise SystemExit(f"{front.name}: the reply is not an echo of the request")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and every process in its session (a front's workers), all
    their threads included."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == pid or stat.parent.name == str(pid):  # session id, or the process itself
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def h2load(
    front: Front, shape: list[str], body: Path, seconds: float, reply_bytes: int, measure: bool
) -> tuple[float, float, float]:
    """One h2load run; returns (req/s, server CPU %, h2load CPU %)."""
    headers = (
        ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        if front.kind == "grpc"
        else ["-H", "content-type: application/octet-stream"]
    )
    command = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "h2load",
        *shape,
        "-D",
        f"{round(seconds * 1000)}ms",
        *headers,
        "-d",
        str(body),
        front.url,
    ]
    server_before = cpu_seconds(front.process.pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (cpu_seconds(front.process.pid) - server_before) / wall * 100
    client_cpu = (
        ((children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime))
        / wall
        * 100
    )
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    data = re.search(r"traffic: .*?, [\d.]+\w* \((\d+)\) data", out)
    if not (rate and done and data):
        raise SystemExit(f"{front.name}: cannot read h2load output:\n{out}")
    finished, succeeded = int(done.group(1)), int(done.group(2))
    if measure:
        per_reply = int(data.group(1)) / max(succeeded, 1)
        # In a timed run, replies still in flight when it stops bring data but are not counted.
        slack = 1 + 64 * reply_bytes / max(succeeded, 1)
        if succeeded != finished or succeeded == 0 or abs(per_reply - reply_bytes) > slack:
            raise SystemExit(
                f"{front.name}: bad run ({succeeded} of {finished} succeeded, {per_reply:.1f} data "
                f"bytes per reply, expected {reply_bytes}):\n{out}"
            )
    return float(rate.group(1)), server_cpu, client_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--fronts", nargs="*", default=list(FRONTS), choices=FRONTS)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="front-ceilings-")
    folder = Path(scratch.name)
    payload = b"x" * args.size
    framed = b"\x00" + struct.pack(">I", len(payload)) + payload
    bodies = {"grpc": folder / "grpc.body", "http": folder / "http.body"}
    bodies["grpc"].write_bytes(framed)
    bodies["http"].write_bytes(payload)
    reply_bytes = {"grpc": len(framed), "http": len(payload)}

    fronts = [Front(name, "http" if name.startswith("aiohttp") else "grpc") for name in args.fronts]
    for repeat in range(args.repeats):
        for front in fronts:
            start(front)
            try:
                check(front)
                for shape_name, shape in SHAPES[front.kind]:
                    h2load(front, shape, bodies[front.kind], args.warmup, reply_bytes[front.kind], measure=False)
                    rate, server_cpu, client_cpu = h2load(
                        front, shape, bodies[front.kind], args.seconds, reply_bytes[front.kind], measure=True
                    )
                    front.rates.setdefault(shape_name, []).append(rate)
                    front.cpu.setdefault(shape_name, []).append((server_cpu, client_cpu))
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {front.name:<16} {shape_name:<13} {rate:>9.0f} req/s"
                        f"  server {server_cpu:3.0f}% CPU, h2load {client_cpu:3.0f}%",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                stop(front.process)
                front.process = None
                front.log.close()

    baseline_front = next((f for f in fronts if f.name == "grpc.aio"), None)
    baseline = statistics.median(baseline_front.rates["1 conn x 64"]) if baseline_front else None
    baseline_cost = statistics.median(cpu_per_call(baseline_front, "1 conn x 64")) if baseline_front else None
    print(
        f"\n{args.size} B unary echo; server on core {SERVER_CPU}, h2load on core {CLIENT_CPU}; "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s measured, median of {args.repeats}"
    )
    header = (
        f"{'front':<26} {'load':<13} {'req/s':>8} {'x grpc.aio':>10} {'min-max':>15} {'srv CPU':>8} {'h2load':>7}"
        f" {'CPU us/call':>11} {'x grpc.aio':>10}"
    )
    print(header)
    print("-" * len(header))
    for front in fronts:
        for shape_name, rates in front.rates.items():
            rate = statistics.median(rates)
            server_cpu = statistics.median(c[0] for c in front.cpu[shape_name])
            client_cpu = statistics.median(c[1] for c in front.cpu[shape_name])
            ratio = f"{rate / baseline:.2f}" if baseline else "-"
            spread = f"{min(rates):.0f}-{max(rates):.0f}"
            cost = statistics.median(cpu_per_call(front, shape_name))
            cost_ratio = f"{baseline_cost / cost:.2f}" if baseline_cost else "-"
            print(
                f"{front.name:<26} {shape_name:<13} {rate:>8.0f} {ratio:>10} {spread:>15} "
                f"{server_cpu:>7.0f}% {client_cpu:>6.0f}% {cost:>11.0f} {cost_ratio:>10}"
            )
    scratch.cleanup()


def cpu_per_call(front: Front, shape: str) -> list[float]:
    """Microseconds of CPU the server (all its processes) spent per call, in each repeat: unlike
    req/s, this barely moves when another process takes part of the server's core."""
    return [cpu / 100 / rate * 1e6 for rate, (cpu, _) in zip(front.rates[shape], front.cpu[shape], strict=True)]


def terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        signal.signal(signal.SIGTERM, terminate)
        try:
            main()
        finally:
            for process in list(RUNNING):
                stop(process)
