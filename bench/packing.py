"""What packing the hot messages costs per call: a one-shot call's ``Once`` and its answer's
``Done``, packed, pickled (protocol 5, payloads out of band), unpickled and unpacked, as the IPC
frames do; beside it the same messages pickled as class instances, what packing saves.

    .venv/bin/python bench/packing.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import pickle
import time

from aiges.engine.ipc import out_of_band
from aiges.engine.items import DataItem
from aiges.engine.messages import CallContext, Done, Expect, Items, ItemsOutput, Once, OnceReply, Timings, Wire
from aiges.engine.packing import pack, unpack


def round_trip_packed(message: object) -> object:
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(pack(message), protocol=5, buffer_callback=buffers.append)
    return unpack(pickle.loads(meta, buffers=[b.raw() for b in buffers]))


def round_trip_instance(message: object) -> object:
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(meta, buffers=[b.raw() for b in buffers])


def per_call_us(function, messages: list[object], seconds: float) -> float:
    """The best of 7 rounds of this process's CPU time for one call's messages, in microseconds
    (CPU time and the best round: other processes on a busy machine change neither much)."""
    rounds = []
    for _ in range(7):
        count = 0
        start = time.process_time()
        deadline = start + seconds / 7
        while time.process_time() < deadline:
            for _ in range(200):
                for message in messages:
                    function(message)
            count += 200
        rounds.append((time.process_time() - start) / count * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    timings = Timings(1.0, 2.0, 3.0, 4.0)
    context = CallContext("handle-1234", "trace", "10.0.0.1:5090", "app")
    xsf = [
        Once(1, context, Wire("xsf", out_of_band(b"x" * 1100))),
        Done(1, OnceReply(out_of_band(b"y" * 1150)), timings),
    ]
    item = DataItem("text", out_of_band(b"x" * 1024), 0, 3, {})
    items = [
        Once(2, context, Items([item], {"p": "1"}, {}, {"text": Expect(0, {})})),
        Done(2, OnceReply(ItemsOutput(3, [item])), timings),
    ]
    for name, messages in (("xsf (Wire)", xsf), ("OIP/ASE (Items)", items)):
        for message in messages:
            assert type(round_trip_packed(message)) is type(message)
        packed = per_call_us(round_trip_packed, messages, args.seconds)
        plain = per_call_us(round_trip_instance, messages, args.seconds)
        print(f"{name:16s} packed {packed:5.2f} us/call   pickled as instances {plain:5.2f} us/call")


if __name__ == "__main__":
    main()
