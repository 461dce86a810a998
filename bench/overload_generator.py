"""The open-loop load generator of ``bench/overload.py``, one process of several:

    overload_generator.py --address HOST:PORT --rate CALLS_PER_S --seconds S --deadline S
                          --connections N --arrivals poisson|uniform --seed N --priority rr|nice|none

It connects (one call per connection, with ``sent`` = 0 so the run leaves it out), prints
``ready``, reads the start time (wall clock) from stdin, then sends every call of its schedule at
its time, whatever the replies do: each call is a task of its own, none waits for another. It
prints one JSON object: ``calls``, a record per call ``[due, sent, latency_s, status, aiges_code]``
(due and sent are wall-clock times, so sent - due is how late the call went out), and ``cpu_s``,
its own CPU time over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time

import grpc

from aiges.protocol import oip_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"
MODEL = "sleep"
Record = tuple[float, float, float, str, str]


PRIORITIES = ("rr", "nice", "none")


def raise_priority(kind: str) -> None:
    """``rr``: SCHED_RR at the lowest real-time priority, so a call due goes out as soon as it is
    due even on a busy box (the generator uses 10-15 % of a core, so it takes little from anyone,
    and the kernel's real-time throttling bounds it anyway); ``nice``: nice -10. Falls back to
    ``nice``, then to nothing, where not allowed; set before grpc starts its threads, which inherit
    it."""
    if kind == "rr":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            return
        except PermissionError:
            print("load generator: SCHED_RR not allowed; trying nice -10", file=sys.stderr)
    if kind in ("rr", "nice"):
        try:
            os.nice(-10)
        except PermissionError:
            print("load generator: may not renice; running at normal priority", file=sys.stderr)


def arrivals(rate: float, seconds: float, seed: int, kind: str) -> list[float]:
    """Offsets (s) from the start of the run at which calls are due."""
    if kind == "uniform":
        return [i / rate for i in range(int(rate * seconds))]
    rng, offsets, t = random.Random(seed), list[float](), 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return offsets
        offsets.append(t)


def request(sent: str) -> pb.ModelInferRequest:
    """The model's call: its send time as a one-element BYTES tensor ``sent``, echoed back."""
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="sent", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[sent.encode()])
    )
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name="sent")
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], outputs=[output])


async def generate(args: argparse.Namespace) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [grpc.aio.insecure_channel(args.address, options=options) for _ in range(args.connections)]
    stubs = [
        c.unary_unary(
            METHOD,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        for c in channels
    ]
    for stub in stubs:
        await stub(request("0"), timeout=30)
    print("ready", flush=True)
    t0 = float(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    schedule = [t0 + offset for offset in arrivals(args.rate, args.seconds, args.seed, args.arrivals)]
    records: list[Record] = []
    gc.collect()
    gc.disable()  # a collection pass would hold up the schedule; a run's garbage is a few MB
    cpu_at_start = time.process_time()

    async def one(due: float, stub: grpc.aio.UnaryUnaryMultiCallable) -> None:
        sent = time.time()
        began = time.perf_counter()
        code, aiges_code = "OK", ""
        try:
            await stub(request(f"{sent:.6f}"), timeout=args.deadline)
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            aiges_code = str(dict(error.trailing_metadata() or ()).get("aiges-code", ""))
        records.append((due, sent, time.perf_counter() - began, code, aiges_code))

    tasks = []
    index = 0
    while index < len(schedule):
        now = time.time()
        if schedule[index] > now:
            await asyncio.sleep(schedule[index] - now)
            continue
        while index < len(schedule) and schedule[index] <= now:  # all that are due, late or not
            tasks.append(asyncio.ensure_future(one(schedule[index], stubs[index % len(stubs)])))
            index += 1
    await asyncio.gather(*tasks)
    cpu_s = time.process_time() - cpu_at_start
    for channel in channels:
        await channel.close()
    json.dump({"calls": records, "cpu_s": cpu_s}, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--rate", type=float, required=True, help="this process's share, calls/s")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--deadline", type=float, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--priority", choices=PRIORITIES, default="none")
    args = parser.parse_args()
    raise_priority(args.priority)
    try:
        import uvloop
    except ImportError:
        asyncio.run(generate(args))
    else:
        uvloop.run(generate(args))


if __name__ == "__main__":
    main()
