"""Frames survive the trip between an AsyncChannel and a BlockingChannel intact, through the
socket and through the shared-memory rings."""

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiges.engine import ipc
from aiges.engine.shm import SHM_MIN, ShmRing


def echo_worker(sock, send_ring=None, recv_ring=None):
    """Sends every message back, with its payloads, as a worker would."""
    channel = ipc.BlockingChannel(sock, send_ring=send_ring, recv_ring=recv_ring)
    while True:
        try:
            messages = channel.recv()
        except EOFError:
            return
        for message in messages:
            kind, index, payload = message
            channel.send((kind, index, ipc.out_of_band(bytes(payload))))
            channel.done()


async def round_trip(messages, ring_size=0):
    server_end, worker_end = ipc.socket_pair()
    rings = (ShmRing(ring_size), ShmRing(ring_size)) if ring_size else (None, None)
    worker_rings = (ShmRing(ring_size, rings[0].fd), ShmRing(ring_size, rings[1].fd)) if ring_size else (None, None)
    thread = threading.Thread(target=echo_worker, args=(worker_end, worker_rings[1], worker_rings[0]), daemon=True)
    thread.start()
    received = []
    done = asyncio.get_running_loop().create_future()

    def on_message(message):
        received.append(message)
        if len(received) == len(messages) and not done.done():
            done.set_result(None)

    channel = ipc.AsyncChannel(server_end, on_message, lambda: None, send_ring=rings[0], recv_ring=rings[1])
    for kind, index, payload in messages:
        channel.send((kind, index, ipc.out_of_band(payload)))
    await asyncio.wait_for(done, 30)
    channel.close()
    thread.join(5)
    return received, (rings[0], worker_rings[1])


sizes = st.sampled_from([0, 1, 100, 4095, 4096, SHM_MIN - 1, SHM_MIN, 300_000, 2_500_000])


@settings(max_examples=20, deadline=None)
@given(st.lists(sizes, min_size=1, max_size=12), st.sampled_from([0, 1 << 20, 8 << 20]))
def test_payloads_of_any_size_arrive_byte_exact_and_in_order(lengths, ring_size):
    messages = [("echo", i, bytes((i + j) % 251 for j in range(n))) for i, n in enumerate(lengths)]
    received, rings = asyncio.run(round_trip(messages, ring_size))
    assert [(k, i, bytes(p)) for k, i, p in received] == messages
    if ring_size:
        to_worker, to_server = rings
        assert to_worker.consumed == to_worker.produced
        assert to_server.consumed == to_server.produced
        if any(SHM_MIN <= n <= ring_size for n in lengths):
            assert to_worker.produced > 0 and to_server.produced > 0


def test_large_payloads_travel_in_the_ring_and_small_ones_inline():
    ring = ShmRing(1 << 20)
    pieces = ipc.encode(("echo", 1, ipc.out_of_band(b"y" * SHM_MIN)), ring)
    assert len(pieces) == 2 and ring.produced == SHM_MIN
    pieces = ipc.encode(("echo", 2, ipc.out_of_band(b"x" * 10_000)), ring)
    assert len(pieces) == 3 and bytes(pieces[2]) == b"x" * 10_000
    assert b"x" * 100 not in pieces[1]
    assert ipc.encode(("echo", 3, ipc.out_of_band(b"z" * (2 << 20))), ring)[2].nbytes == 2 << 20


def test_a_full_ring_makes_the_sender_wait_not_spill():
    ring = ShmRing(1 << 20)
    assert ipc.encode(("a", 1, ipc.out_of_band(b"a" * 700_000)), ring, wait_for_ring=True) is not None
    assert ipc.encode(("b", 2, ipc.out_of_band(b"b" * 700_000)), ring, wait_for_ring=True) is None
    assert ring.produced == 700_000
    ring.release(700_000)
    assert ipc.encode(("b", 2, ipc.out_of_band(b"b" * 700_000)), ring, wait_for_ring=True) is not None


def test_out_of_band_only_marks_large_payloads():
    assert ipc.out_of_band(b"small") == b"small"
    with pytest.raises(TypeError):
        ipc.out_of_band(b"z" * 5000) + b""
