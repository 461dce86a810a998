"""Dynamic batching: a model costing 2 ms per call plus 0.1 ms per item, served with and without
``[batch]``, under 32 concurrent callers.

    .venv/bin/python bench/batching.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from common import ROOT, aiges_server, closed_loop

from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData
from aiges.protocol.xsf_pb2_grpc import XsfCallStub

WRAPPER = ROOT / "bench" / "wrappers" / "batch_cost"
CONCURRENCY = 32


async def measure(address: str, seconds: float):
    async with grpc.aio.insecure_channel(address) as channel:
        stub = XsfCallStub(channel)
        message = loader_input(state=LoaderInput.ONCE, inputs={"text": b"x" * 64}, expect=["text"], status=3)
        body = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])

        async def one() -> None:
            reply = await stub.call(body)
            assert LoaderOutput.FromString(reply.data[0].data).code == 0

        return await closed_loop(one, CONCURRENCY, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6)
    args = parser.parse_args()
    print(f"model: 2 ms per call + 0.1 ms per item; 1 worker; {CONCURRENCY} concurrent callers")
    rates = {}
    variants = (("unbatched", ""), ("[batch] max_size=32 max_delay_ms=2", "[batch]\nmax_size = 32\nmax_delay_ms = 2\n"))
    for label, extra in variants:
        with aiges_server(WRAPPER, extra=extra) as address:
            load = asyncio.run(measure(address, args.seconds))
        rates[label] = load.rate
        print(
            f"  {label:38s} {load.rate:8.1f} calls/s  p50 {load.percentile(50):6.1f} ms  "
            f"p99 {load.percentile(99):6.1f} ms"
        )
    print(f"  batching gain: {rates[list(rates)[1]] / rates['unbatched']:.1f}x")


if __name__ == "__main__":
    main()
