"""What many services in one daemon cost (README: "Many services").

Routing: the same 1 KiB echo call through xsf (routed by ``LoaderInput.serviceId``) and OIP
gRPC (by model name), against a daemon serving one service and a daemon serving three (the call
goes to the last one listed, the longest lookup), in the same run: each daemon in turn on core 0,
h2load on core 1, alternated, median of the repeats.

Memory: three small services (the echo demo, one worker each) in one daemon, against three
daemons of one service each: the proportional set size (PSS, shared pages split among the
processes that map them) of every process of the daemon(s), server and workers, after some calls.

    .venv/bin/python bench/services.py [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import MALLOC_ENV, ROOT, free_port, process_tree, wait_serving
from fronts import grpc_frame, h2load

SIZE = 1024
ECHO = ROOT / "demo" / "echo"
NAMES = ("echo", "echo-b", "echo-c")


def config(port: int, services: tuple[str, ...]) -> str:
    text = (
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\nmaxreceive = 64\nmaxsend = 64\n'
        f'[worker]\ncount = 1\ngpus = ""\n[fc]\nmax = 1000\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n'
    )
    if not services:  # the single form
        return text + f'[aiges]\nwrapper = "{ECHO}"\n'
    return text + "".join(f'[[service]]\nwrapper = "{ECHO}"\nname = "{name}"\n' for name in services)


@contextlib.contextmanager
def daemon(services: tuple[str, ...], cpus: str | None = "0") -> Iterator[tuple[str, int]]:
    """An ``aiges serve`` of ``services`` (none: the single form); yields (address, pid)."""
    port = free_port()
    path = Path(tempfile.mkdtemp(prefix="aiges-bench-services-")) / "aiges.toml"
    path.write_text(config(port, services))
    command = [sys.executable, "-m", "aiges", "serve", "-c", str(path)]
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
        yield address, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def bodies(folder: Path, service: str) -> dict[str, tuple[str, Path]]:
    """front -> (path, body file) of a 1 KiB echo call to ``service``."""
    from aiges.client.values import loader_input
    from aiges.protocol import oip_pb2
    from aiges.protocol.oip_tensors import pack_bytes
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import DataMeta, ReqData

    data = b"x" * SIZE
    message = loader_input(state=LoaderInput.ONCE, inputs={"text": data}, expect=["text"], status=3, service_id=service)
    xsf = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
    infer = oip_pb2.ModelInferRequest(model_name=service, raw_input_contents=[pack_bytes([data])])
    infer.inputs.add(name="text", datatype="BYTES", shape=[1])
    files = {}
    for front, path, body in (
        ("xsf", "/utils.XsfCall/call", xsf),
        ("oip-grpc", "/inference.GRPCInferenceService/ModelInfer", infer),
    ):
        file = folder / f"{front}-{service}.body"
        file.write_bytes(grpc_frame(body.SerializeToString()))
        files[front] = (path, file)
    return files


GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]


def routing(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="aiges-bench-services-"))
    cases = {"1 service": ((), "echo"), "3 services (the 3rd)": (NAMES, NAMES[-1])}
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for case, (services, target) in cases.items():
            with daemon(services) as (address, _):
                for front, (path, body) in bodies(scratch, target).items():
                    h2load(f"http://{address}{path}", body, GRPC_HEADERS, False, 1)  # warm-up
                    rate, done, succeeded, _ = h2load(
                        f"http://{address}{path}", body, GRPC_HEADERS, False, args.seconds
                    )
                    if succeeded != done or done == 0:
                        raise SystemExit(f"{case} {front}: {done - succeeded} of {done} calls failed")
                    rates.setdefault((case, front), []).append(rate)
    print(
        f"routing: 1 KiB echo, daemon on core 0, h2load on core 1 (1 connection x 64 streams), "
        f"median of {args.repeats} x {args.seconds} s, daemons alternated"
    )
    print(f"{'front':<10} {'1 service':>12} {'3 services':>12} {'ratio':>7}")
    for front in ("xsf", "oip-grpc"):
        one = statistics.median(rates[("1 service", front)])
        three = statistics.median(rates[("3 services (the 3rd)", front)])
        print(f"{front:<10} {one:>10.0f}/s {three:>10.0f}/s {three / one:>7.3f}")


def lookup() -> None:
    """The routing step alone, in this process: reading a first frame's serviceId (the xsf
    front parsed that LoaderInput before, for its state) and finding the service, among 1 and 3."""
    import asyncio
    import timeit

    from aiges.client.values import loader_input
    from aiges.config import load_config
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_request import first_frame
    from aiges.server.service import Service
    from aiges.server.services import Services

    async def build(names: tuple[str, ...]) -> Services:
        path = Path(tempfile.mkdtemp(prefix="aiges-bench-services-")) / "aiges.toml"
        path.write_text(config(free_port(), names))
        loaded = load_config(path)
        services = Services(loaded.listed)
        for spec in loaded.specs():
            services.add(Service(spec, loaded, "127.0.0.1:1", reread=lambda: loaded, serving=lambda: True))
        return services

    data = loader_input(
        state=LoaderInput.ONCE, inputs={"text": b"x" * SIZE}, expect=["text"], status=3, service_id=NAMES[-1]
    ).SerializeToString()
    one, three = asyncio.run(build(("echo",))), asyncio.run(build(NAMES))
    rounds = 200_000
    parse = min(timeit.repeat(lambda: first_frame(data), number=rounds, repeat=5)) / rounds
    route_one = min(timeit.repeat(lambda: one.route("echo"), number=rounds, repeat=5)) / rounds
    route_three = min(timeit.repeat(lambda: three.route(NAMES[-1]), number=rounds, repeat=5)) / rounds
    print("routing step alone (this process, best of 5 x 200k):")
    print(f"  first frame parsed (state + serviceId, 1 KiB)  {parse * 1e6:6.2f} us (the front parsed it before too)")
    print(f"  route among 1 service                          {route_one * 1e6:6.2f} us")
    print(f"  route among 3 services (the 3rd)               {route_three * 1e6:6.2f} us")


def pss_kib(pids: list[int]) -> tuple[int, int]:
    """(PSS, RSS) in KiB summed over ``pids``."""
    pss = rss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
    return pss, rss


def warm(address: str, services: tuple[str, ...]) -> None:
    from aiges.client import Client

    for service in services:
        with Client(address, service_id=service) as client:
            for _ in range(50):
                client.once({"text": b"x" * SIZE}, expect=["text"])


def memory() -> None:
    with daemon(NAMES, cpus=None) as (address, pid):
        warm(address, NAMES)
        time.sleep(1)
        tree = process_tree(pid)
        one_pss, one_rss = pss_kib(tree)
        one_processes = len(tree)
    with contextlib.ExitStack() as stack:
        daemons = [stack.enter_context(daemon((), cpus=None)) for _ in NAMES]
        trees = []
        for address, pid in daemons:
            warm(address, ("",))
            trees += process_tree(pid)
        time.sleep(1)
        three_pss, three_rss = pss_kib(trees)
    print("memory: 3 echo services, 1 worker each, after 50 calls each (PSS: shared pages split)")
    print(f"{'':<24} {'processes':>9} {'PSS MiB':>9} {'RSS MiB':>9}")
    print(f"{'one daemon, 3 services':<24} {one_processes:>9} {one_pss / 1024:>9.1f} {one_rss / 1024:>9.1f}")
    print(f"{'3 daemons, 1 service':<24} {len(trees):>9} {three_pss / 1024:>9.1f} {three_rss / 1024:>9.1f}")
    print(f"{'saved':<24} {len(trees) - one_processes:>9} {(three_pss - one_pss) / 1024:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["routing", "lookup", "memory"])
    args = parser.parse_args()
    if args.only in (None, "lookup"):
        lookup()
    if args.only in (None, "routing"):
        routing(args)
    if args.only in (None, "memory"):
        memory()


if __name__ == "__main__":
    main()
