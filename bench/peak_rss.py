"""Peak memory of one large one-shot call: how many copies of the payload the server and its
worker hold at once.

One 48 MiB one-shot ``utils.XsfCall/call`` echo (demo/echo, one worker, ``maxreceive`` and
``maxsend`` 64) after two small warm-up calls; for the server process and for its worker, the
rise of ``VmHWM`` (``/proc/PID/status``, the peak resident set, which counts the shared-memory
pages a process has touched) over that call, in payloads. The peak is reset to the current RSS
before the call where the kernel allows it (``/proc/PID/clear_refs``, 5); otherwise the rise is
measured from the previous peak, which the warm-up calls keep low. Beside it, the same call
against a bare grpc.aio echo that returns the request bytes as they came (no parsing): what grpc
alone holds, the floor of any Python gRPC front.

    .venv/bin/python bench/peak_rss.py [--mb 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from common import MALLOC_ENV, ROOT, free_port, process_tree, wait_port, wait_serving

BARE_ECHO = """
import asyncio, sys
import grpc

async def call(raw, context):
    return raw

async def main(port):
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "utils.XsfCall", {"call": grpc.unary_unary_rpc_method_handler(call)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

asyncio.run(main(int(sys.argv[1])))
"""


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Set the process's VmHWM to its current RSS (Linux 4.0+, needs ptrace rights over it)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def request(size: int) -> bytes:
    from aiges.client.values import loader_input
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import DataMeta, ReqData

    message = loader_input(state=LoaderInput.ONCE, inputs={"text": os.urandom(size)}, expect=["text"], status=3)
    return ReqData(
        op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())]
    ).SerializeToString()


def reply_payload(raw: bytes) -> bytes:
    from aiges.protocol.v2_pb2 import LoaderOutput
    from aiges.protocol.xsf_pb2 import ResData

    reply = ResData.FromString(raw)
    output = LoaderOutput.FromString(reply.data[0].data)
    if output.code:
        raise SystemExit(f"the call failed: {output.code} {output.err}")
    return output.pl[0].data


def measure(address: str, pids: dict[str, int], size: int, check: bool) -> dict[str, tuple[float, float]]:
    """Each process's peak RSS before and after one call of ``size`` bytes, in MiB."""
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    warm, big = request(1024), request(size)
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary("/utils.XsfCall/call", request_serializer=None, response_deserializer=None)
        for _ in range(2):
            call(warm, timeout=30)
        call(request(1 << 20), timeout=30)
        time.sleep(0.2)
        before = {}
        for name, pid in pids.items():
            before[name] = status_kib(pid, "VmRSS" if reset_peak(pid) else "VmHWM")
        reply = call(big, timeout=120)
        after = {name: status_kib(pid, "VmHWM") for name, pid in pids.items()}
    if check and reply_payload(reply) != reply_payload_of_request(big):
        raise SystemExit("the echo reply does not hold the payload")
    return {name: (before[name] / 1024, after[name] / 1024) for name in pids}


def reply_payload_of_request(raw: bytes) -> bytes:
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import ReqData

    return LoaderInput.FromString(ReqData.FromString(raw).data[0].data).pl[0].data


@contextlib.contextmanager
def aiges(wrapper: Path, env: dict[str, str]) -> Iterator[tuple[str, dict[str, int]]]:
    """An ``aiges serve`` of ``wrapper`` with one worker; yields its address and the pids of the
    server and its worker."""
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="aiges-peak-")) / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\nmaxreceive = 64\nmaxsend = 64\n'
        f'[aiges]\nwrapper = "{wrapper}"\n[worker]\ncount = 1\ngpus = ""\n'
        f'[fc]\nmax = 10\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aiges", "serve", "-c", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, process)
        workers = [pid for pid in process_tree(process.pid) if "aiges.worker" in cmdline(pid)]
        if len(workers) != 1:
            raise SystemExit(f"expected one worker process, found {workers}")
        yield address, {"server": process.pid, "worker": workers[0]}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers; the median is printed")
    parser.add_argument(
        "--malloc-env", action="store_true", help="the other benchmarks' glibc settings (mmap threshold 64 MiB)"
    )
    args = parser.parse_args()
    env = MALLOC_ENV if args.malloc_env else {}
    size = args.mb << 20
    payload_mib = size / (1 << 20)
    rows: dict[str, list[dict[str, tuple[float, float]]]] = {"aiges": [], "bare grpc.aio": []}
    for _ in range(args.repeats):
        with aiges(ROOT / "demo" / "echo", env) as (address, pids):
            rows["aiges"].append(measure(address, pids, size, check=True))
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_ECHO, str(port)], env={**os.environ, **env})
        try:
            wait_port(f"127.0.0.1:{port}")
            rows["bare grpc.aio"].append(measure(f"127.0.0.1:{port}", {"server": bare.pid}, size, check=False))
        finally:
            bare.terminate()
            bare.wait(10)
    print(f"Peak RSS (VmHWM) over one {args.mb} MiB one-shot xsf echo, median of {args.repeats} fresh servers")
    print(f"{'':15s}{'process':8s}{'before MiB':>11s}{'after MiB':>10s}{'rise, payloads':>16s}")
    for name, samples in rows.items():
        total = 0.0
        for process in samples[0]:
            ordered = sorted(samples, key=lambda s: s[process][1] - s[process][0])
            before, after = ordered[len(ordered) // 2][process]
            rise = (after - before) / payload_mib
            total += rise
            print(f"{name:15s}{process:8s}{before:11.0f}{after:10.0f}{rise:16.1f}")
        print(f"{name:15s}{'total':8s}{'':21s}{total:16.1f}")


if __name__ == "__main__":
    main()
