"""What each front costs: the same 1 KiB echo call through xsf, OIP gRPC, the ASE JSON API over
HTTP and OIP REST, against one aiges server (echo demo, 1 worker) pinned to core 0, driven by
h2load on core 1 for a few seconds each, median of three; beside them, in the same run, the bare
grpc.aio echo of ``bench/ceiling.py`` (no engine, no workers) on the same core, as the yardstick.

    .venv/bin/python bench/fronts.py [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import ROOT, aiges_server, free_port, wait_port

SIZE = 1024


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def bodies(folder: Path) -> dict[str, tuple[str, Path, list[str], bool]]:
    """front -> (path, body file, extra headers, HTTP/1.1)."""
    from aiges.client.values import loader_input
    from aiges.protocol import oip_pb2
    from aiges.protocol.oip_tensors import pack_bytes
    from aiges.protocol.v2_pb2 import LoaderInput
    from aiges.protocol.xsf_pb2 import DataMeta, ReqData

    data = b"x" * SIZE
    xsf = ReqData(
        op="AIIn",
        param={"SeqNo": "1"},
        data=[
            DataMeta(
                data=loader_input(
                    state=LoaderInput.ONCE, inputs={"text": data}, expect=["text"], status=3
                ).SerializeToString()
            )
        ],
    )
    infer = oip_pb2.ModelInferRequest(model_name="echo", raw_input_contents=[pack_bytes([data])])
    infer.inputs.add(name="text", datatype="BYTES", shape=[1])
    ase = {"payload": {"text": {"text": base64.b64encode(data).decode(), "status": 3}}}
    rest = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [data.decode()]}]}
    grpc_headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    json_headers = ["-H", "content-type: application/json"]
    files = {
        "xsf": grpc_frame(xsf.SerializeToString()),
        "oip-grpc": grpc_frame(infer.SerializeToString()),
        "ase-http": json.dumps(ase).encode(),
        "oip-rest": json.dumps(rest).encode(),
    }
    paths = {
        "xsf": "/utils.XsfCall/call",
        "oip-grpc": "/inference.GRPCInferenceService/ModelInfer",
        "ase-http": "/v1/private/echo",
        "oip-rest": "/v2/models/echo/infer",
    }
    fronts = {}
    for name, body in files.items():
        path = folder / f"{name}.body"
        path.write_bytes(body)
        http1 = name in ("ase-http", "oip-rest")
        fronts[name] = (paths[name], path, json_headers if http1 else grpc_headers, http1)
    return fronts


def h2load(url: str, body: Path, headers: list[str], http1: bool, seconds: int) -> tuple[float, int, int, int]:
    connections = ["--h1", "-c", "64", "-m", "1"] if http1 else ["-c", "1", "-m", "64"]
    command = ["taskset", "-c", "1", "h2load", *connections, "-D", str(seconds), *headers, "-d", str(body), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    data = re.search(r"traffic: .*?, [\d.]+\w* \((\d+)\) data", out)
    if not (rate and done and data):
        raise SystemExit(f"cannot read h2load output:\n{out}")
    return float(rate.group(1)), int(done.group(1)), int(done.group(2)), int(data.group(1))


def check(http: str) -> None:
    """One real call through each HTTP route, so a broken front cannot pass as fast."""
    for path, body in (
        ("/v1/private/echo", {"payload": {"text": {"text": base64.b64encode(b"ok").decode()}}}),
        ("/v2/models/echo/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ok"]}]}),
    ):
        request = urllib.request.Request(
            http + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert b'"ok"' in reply.read(), path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="aiges-fronts-")
    fronts = bodies(Path(scratch.name))
    http_port = free_port()
    extra = f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
    results: dict[str, list[float]] = {name: [] for name in fronts}
    results[CEILING] = []
    ceiling_port = free_port()
    ceiling = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(ROOT / "bench" / "ceiling.py"), "--port", str(ceiling_port)]
    )
    try:
        wait_port(f"127.0.0.1:{ceiling_port}")
        with aiges_server(ROOT / "demo" / "echo", extra=extra, cpus="0") as address:
            measure(fronts, results, address, f"127.0.0.1:{ceiling_port}", http_port, args)
    finally:
        ceiling.terminate()
        ceiling.wait(10)
    base = statistics.median(results["xsf"])
    bare = statistics.median(results[CEILING])
    print(f"1 KiB echo, aiges 1 worker on core 0, h2load on core 1, median of {args.repeats} x {args.seconds} s")
    print(
        f"{'front':<22} {'req/s':>8} {'x xsf':>7} {'x grpc.aio':>10}"
        "   (gRPC: 1 connection x 64 streams; HTTP/1.1: 64 connections)"
    )
    for name, rates in results.items():
        rate = statistics.median(rates)
        print(f"{name:<22} {rate:>8.0f} {rate / base:>7.2f} {rate / bare:>10.2f}")
    scratch.cleanup()


CEILING = "bare grpc.aio (no pool)"


def measure(fronts, results, address: str, ceiling: str, http_port: int, args) -> None:
    http = f"http://127.0.0.1:{http_port}"
    check(http)
    runs = {**fronts, CEILING: fronts["xsf"]}
    for _ in range(args.repeats):
        for name, (path, body, headers, http1) in runs.items():
            base = http if http1 else f"http://{ceiling if name == CEILING else address}"
            rate, done, succeeded, data = h2load(base + path, body, headers, http1, args.seconds)
            # h2load counts a gRPC error (HTTP 200, grpc-status in trailers) as a success:
            # every reply must also be big enough to hold the echoed 1 KiB
            if succeeded != done or data < done * SIZE:
                raise SystemExit(
                    f"{name}: {done - succeeded} of {done} calls failed, {data / max(done, 1):.0f} bytes a reply"
                )
            results[name].append(rate)


if __name__ == "__main__":
    main()
