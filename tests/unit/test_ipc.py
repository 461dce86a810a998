"""Frames survive the trip between an AsyncChannel and a BlockingChannel intact, through the
socket and through the shared-memory rings."""

import asyncio
import os
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiges.engine import ipc
from aiges.engine.messages import SessionOutput, Spliced
from aiges.engine.shm import MEMFD_MIN, SHM_MIN, MappedFile, ShmRing, copy_out


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
    rings: tuple[ShmRing | None, ShmRing | None] = (None, None)
    worker_rings: tuple[ShmRing | None, ShmRing | None] = (None, None)
    if ring_size:
        to_worker, to_server = ShmRing(ring_size), ShmRing(ring_size)
        rings, worker_rings = (
            (to_worker, to_server),
            (ShmRing(ring_size, to_worker.fd), ShmRing(ring_size, to_server.fd)),
        )
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


def encoded(message: object, ring: ShmRing | None = None, fds: list[int] | None = None) -> list[bytes | memoryview]:
    pieces = ipc.encode(message, ring, fds=fds)
    assert pieces is not None
    return pieces


def test_large_payloads_travel_in_the_ring_and_small_ones_inline():
    ring = ShmRing(1 << 20)
    pieces = encoded(("echo", 1, ipc.out_of_band(b"y" * SHM_MIN)), ring)
    assert len(pieces) == 2 and ring.produced == SHM_MIN
    pieces = encoded(("echo", 2, ipc.out_of_band(b"x" * 10_000)), ring)
    assert len(pieces) == 3 and bytes(pieces[2]) == b"x" * 10_000
    assert b"x" * 100 not in pieces[1]
    assert memoryview(encoded(("echo", 3, ipc.out_of_band(b"z" * (2 << 20))), ring)[2]).nbytes == 2 << 20


def test_a_full_ring_makes_the_sender_wait_not_spill():
    ring = ShmRing(1 << 20)
    assert ipc.encode(("a", 1, ipc.out_of_band(b"a" * 700_000)), ring, wait_for_ring=True) is not None
    assert ipc.encode(("b", 2, ipc.out_of_band(b"b" * 700_000)), ring, wait_for_ring=True) is None
    assert ring.produced == 700_000
    ring.release(700_000)
    assert ipc.encode(("b", 2, ipc.out_of_band(b"b" * 700_000)), ring, wait_for_ring=True) is not None


def test_out_of_band_only_marks_large_payloads():
    assert ipc.out_of_band(b"small") == b"small"
    assert isinstance(ipc.out_of_band(b"z" * 5000), pickle.PickleBuffer)
    assert type(ipc.out_of_band(memoryview(b"small"))) is bytes  # a memoryview does not pickle in band


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_very_large_payloads_travel_in_memfds_both_ways_and_no_descriptor_stays_open():
    before = open_fds()
    big = [bytes([i]) * (MEMFD_MIN + i) for i in range(3)]
    messages = [("echo", 0, b"small"), ("echo", 1, big[0]), ("echo", 2, b"m" * SHM_MIN), ("echo", 3, big[1])]
    messages.append(("echo", 4, big[2]))
    received, (to_worker, to_server) = asyncio.run(round_trip(messages, ring_size=8 << 20))
    assert [(k, i, bytes(p)) for k, i, p in received] == messages
    assert to_worker.produced == SHM_MIN and to_server.produced == SHM_MIN  # only the mid-size one
    for ring in (to_worker, to_server):
        ring.close()
    assert open_fds() <= before


def test_a_worker_reads_a_memfd_through_a_read_only_mapping_closed_when_done():
    server_end, worker_end = ipc.socket_pair()
    payload = os.urandom(MEMFD_MIN)
    fds: list[int] = []
    pieces = encoded(("call", ipc.out_of_band(payload)), fds=fds)
    assert len(fds) == 1 and sum(memoryview(p).nbytes for p in pieces) < 200
    server_end.sendmsg(pieces, ipc.fd_message(fds))
    ipc.close_all(fds)
    channel = ipc.BlockingChannel(worker_end)
    [(_, view)] = channel.recv(5)
    assert isinstance(view.obj, MappedFile) and view.readonly
    assert copy_out(view) == payload and copy_out(view, 10, 20) == payload[10:20]
    mapped = view.obj
    view.release()
    channel.done()
    assert mapped.closed and mapped.fd == -1
    channel.close()
    server_end.close()


def test_spliced_pieces_arrive_as_one_buffer_inline_in_the_ring_and_in_a_memfd():
    def through(pieces: list[bytes | memoryview], ring: ShmRing | None = None, fds: list[int] | None = None):
        size = sum(memoryview(p).nbytes for p in pieces)
        buffer = ipc.FrameBuffer(ring)
        for piece in encoded(SessionOutput("h", Spliced(tuple(pieces), size), False), ring, fds):
            data = bytes(memoryview(piece).cast("B"))
            room = buffer.room()
            room[: len(data)] = data
            buffer.end += len(data)
        buffer.fds.extend(fds or ())
        [message] = buffer.messages()
        return message.output

    pieces: list[bytes | memoryview] = [b"head", b"x" * 5000, b"-", b"y" * 3]
    assert through(pieces) == b"".join(pieces)
    ring = ShmRing(1 << 20)
    pieces = [b"head", b"x" * SHM_MIN, b"tail"]
    assert through(pieces, ring) == b"".join(pieces) and ring.produced == SHM_MIN + 8
    pieces = [b"head", memoryview(b"z" * MEMFD_MIN), b"tail"]
    fds: list[int] = []
    assert through(pieces, ring, fds) == b"".join(pieces)
    with pytest.raises(OSError):  # read, then closed
        os.fstat(fds[0])
