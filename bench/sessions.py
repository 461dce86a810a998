"""Session benchmark: sessions opened and closed per second, and chunk round trips per second
through one worker (demo/echo streams every chunk straight back).

    .venv/bin/python bench/sessions.py [--seconds 5] [--concurrency 1,8,32]

It starts its own ``aiges serve`` (1 worker) and drives it with a grpc.aio client: a session is
AIIn SeqNo=1 (create) then AIExcp (destroy); a chunk round trip is one AIIn write whose reply
carries the echoed chunk, and, on the native stream, one message out and its result back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import grpc
from common import ROOT, aiges_server

from aiges.client.values import loader_input
from aiges.protocol.stream_pb2_grpc import SessionStub
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session
from aiges.protocol.xsf_pb2_grpc import XsfCallStub

CHUNK = b"x" * 1024


def request(op: str, message: LoaderInput | None, handle: str = "", **param: str) -> ReqData:
    data = [DataMeta(data=message.SerializeToString())] if message is not None else []
    return ReqData(op=op, s=Session(h=handle), param=param, data=data)


OPEN = request("AIIn", loader_input(state=LoaderInput.STREAM, expect=["text"]), SeqNo="1")


def chunk_request(handle: str, seq: int) -> ReqData:
    return request(
        "AIIn", loader_input(state=LoaderInput.STREAM, inputs={"text": CHUNK}, sync_id=seq, status=1), handle
    )


async def run_for(seconds: float, concurrency: int, one) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def loop(index: int) -> None:
        while time.perf_counter() < stop:
            counts[index] += await one()

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return sum(counts) / (time.perf_counter() - started)


async def sessions_per_second(stub: XsfCallStub, seconds: float, concurrency: int) -> float:
    async def one() -> int:
        reply: ResData = await stub.call(OPEN)
        assert reply.code == 0, reply
        await stub.call(request("AIExcp", None, reply.s.h))
        return 1

    return await run_for(seconds, concurrency, one)


async def xsf_chunks_per_second(stub: XsfCallStub, seconds: float, concurrency: int) -> float:
    async def session_loop() -> int:
        reply = await stub.call(OPEN)
        handle, done = reply.s.h, 0
        for seq in range(1, 201):
            reply = await stub.call(chunk_request(handle, seq))
            output = LoaderOutput.FromString(reply.data[0].data)
            assert output.code == 0 and output.pl[0].data == CHUNK, output
            done += 1
        await stub.call(request("AIExcp", None, handle))
        return done

    return await run_for(seconds, concurrency, session_loop)


async def stream_chunks_per_second(channel: grpc.aio.Channel, seconds: float, concurrency: int) -> float:
    stub = SessionStub(channel)

    async def session_loop() -> int:
        call = stub.Stream()
        await call.write(loader_input(state=LoaderInput.STREAM, expect=["text"]))
        for _ in range(200):
            await call.write(loader_input(state=LoaderInput.STREAM, inputs={"text": CHUNK}, status=1))
            output = await call.read()
            assert output.code == 0 and output.pl[0].data == CHUNK, output
        await call.done_writing()
        call.cancel()
        return 200

    return await run_for(seconds, concurrency, session_loop)


async def run(address: str, seconds: float, levels: list[int]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = XsfCallStub(channel)
        print(f"aiges {address}, 1 worker (demo/echo), {os.cpu_count()} cores, {seconds:.0f} s per figure")
        print(f"{'in flight':>10} {'sessions/s':>12} {'xsf chunks/s':>14} {'stream chunks/s':>16}")
        for level in levels:
            opened = await sessions_per_second(stub, seconds, level)
            xsf = await xsf_chunks_per_second(stub, seconds, level)
            stream = await stream_chunks_per_second(channel, seconds, level)
            print(f"{level:>10} {opened:>12.0f} {xsf:>14.0f} {stream:>16.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    with aiges_server(ROOT / "demo" / "echo") as address:
        asyncio.run(run(address, args.seconds, [int(c) for c in args.concurrency.split(",")]))
