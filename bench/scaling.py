"""Worker scaling: a CPU-bound wrapper (about 5 ms of numpy work per call) on 1 and on 2 workers.

    .venv/bin/python bench/scaling.py [--seconds 8]

Each worker is given one BLAS thread ([worker] threads defaults to cores / workers), so the
speed-up comes from processes, not from numpy's own threads.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import grpc
from common import ROOT, aiges_server, closed_loop

from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData
from aiges.protocol.xsf_pb2_grpc import XsfCallStub

WRAPPER = ROOT / "bench" / "wrappers" / "cpu_bound"


def request() -> ReqData:
    message = loader_input(state=LoaderInput.ONCE, inputs={"text": b"go"}, expect=["text"], status=3)
    return ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])


async def measure(address: str, concurrency: int, seconds: float):
    async with grpc.aio.insecure_channel(address) as channel:
        stub = XsfCallStub(channel)
        body = request()

        async def one() -> None:
            reply = await stub.call(body)
            assert LoaderOutput.FromString(reply.data[0].data).code == 0

        return await closed_loop(one, concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    print(f"CPU-bound wrapper (~5 ms numpy per call), {os.cpu_count()} cores, closed loop, 8 callers")
    rates = {}
    for workers in (1, 2):
        with aiges_server(WRAPPER, workers=workers) as address:
            load = asyncio.run(measure(address, 8, args.seconds))
        rates[workers] = load.rate
        print(
            f"  {workers} worker(s): {load.rate:7.1f} calls/s  p50 {load.percentile(50):6.1f} ms  "
            f"p99 {load.percentile(99):6.1f} ms"
        )
    print(f"  speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
