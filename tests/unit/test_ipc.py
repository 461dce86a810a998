"""Frames survive the trip between an AsyncChannel and a BlockingChannel intact."""

import asyncio
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from aiges.engine import ipc
from aiges.engine.types import DataItem


def echo_worker(sock):
    channel = ipc.BlockingChannel(sock)
    while True:
        try:
            messages = channel.recv()
        except EOFError:
            return
        channel.send_all(messages)


async def round_trip(messages):
    server_end, worker_end = ipc.socket_pair()
    thread = threading.Thread(target=echo_worker, args=(worker_end,), daemon=True)
    thread.start()
    received = []
    done = asyncio.get_running_loop().create_future()

    def on_message(message):
        received.append(message)
        if len(received) == len(messages) and not done.done():
            done.set_result(None)

    channel = ipc.AsyncChannel(server_end, on_message, lambda: None)
    for message in messages:
        channel.send(message)
    if messages:
        await asyncio.wait_for(done, 30)
    channel.close()
    thread.join(5)
    return received


sizes = st.sampled_from([0, 1, 100, 4095, 4096, 70_000, 300_000, 2_500_000])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(sizes, st.text(max_size=20)), min_size=1, max_size=12))
def test_items_of_any_size_arrive_byte_exact_and_in_order(specs):
    messages = []
    for index, (size, key) in enumerate(specs):
        data = bytes((index + i) % 251 for i in range(size))
        messages.append(("once", index, key, {"k": key}, [DataItem(key, data, 2, 1, {"a": key})]))
    assert asyncio.run(round_trip(messages)) == messages


def test_large_buffers_go_out_of_band():
    pieces = ipc.encode(("once", 1, [DataItem("k", b"x" * 10_000)]))
    assert len(pieces) == 3
    assert bytes(pieces[2]) == b"x" * 10_000
    assert b"x" * 100 not in pieces[1]
