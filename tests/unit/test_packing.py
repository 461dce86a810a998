"""Every message the hot path packs into a plain tuple comes back equal, and of its own class,
through a real IPC frame (with its payloads out of band); the layouts are derived from the
classes, so every hot message is covered."""

import pickle

import pytest

from aiges.engine import ipc
from aiges.engine.items import DataItem, WorkerInfo
from aiges.engine.messages import (
    HOT,
    CallContext,
    Done,
    Expect,
    Failed,
    Items,
    ItemsOutput,
    Once,
    OnceReply,
    Open,
    Opened,
    Ready,
    SessionOutput,
    Spliced,
    Timings,
    Usage,
    Wire,
    Write,
)
from aiges.engine.packing import Gather, pack, unpack

TIMINGS = Timings(1.0, 2.0, 3.0, 4.0)
ITEMS = Items(
    [DataItem("in", b"x" * 5000, 2, 1, {"a": "b"})], {"p": "1"}, {"sid": "s"}, {"out": Expect(0, {"e": "f"})}, "svc", 3
)
OUTPUT = ItemsOutput(2, [DataItem("out", b"y", 0, 2, {"seq": "1"})])
MESSAGES = [
    Once(1, CallContext("h", "t", "p", "app", 12.5), Wire("xsf", b"raw" * 2000)),
    Once(2, CallContext("h"), ITEMS),
    Open(3, CallContext("h", "", "p"), Wire("stream", b"raw"), False),
    Write(4, "h", ITEMS),
    Write(5, "h", Wire("xsf", b"w")),
    Done(6, None, TIMINGS),
    Done(7, OnceReply(b"reply" * 1000), TIMINGS),
    Done(8, OnceReply(OUTPUT), TIMINGS),
    Done(9, Opened("svc", [(b"o", False), (OUTPUT, True)]), TIMINGS),
    Failed(10, 10909, "no", TIMINGS),
    SessionOutput("h", b"out", True),
    SessionOutput("h", OUTPUT, False),
    SessionOutput("h", Spliced((b"head", memoryview(b"z" * 9000), b"tail"), 9008), False),
    Done(11, OnceReply(Spliced((b"a" * 10, b"b" * 5000), 5010)), TIMINGS),
    Ready(WorkerInfo(0, 1, "", "class")),
    Usage("app", "", "key", 3),
]


def through_a_frame(message):
    buffer = ipc.FrameBuffer()
    pieces = ipc.encode(message)
    assert pieces is not None
    for piece in pieces:
        data = bytes(memoryview(piece).cast("B"))
        room = buffer.room()
        room[: len(data)] = data
        buffer.end += len(data)
    [received] = buffer.messages()
    return received


def plain(value):
    """Payload buffers compared by their bytes (a Spliced output arrives as its bytes)."""
    if isinstance(value, Spliced):
        return value.join()
    if isinstance(value, pickle.PickleBuffer):
        owner = value.raw().obj
        return b"".join(owner.pieces) if isinstance(owner, Gather) else bytes(value.raw())
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, tuple):
        return type(value), tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, DataItem):
        return DataItem, value.key, bytes(value.data), value.type, value.status, value.desc
    return value


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_come_back_as_themselves(message):
    received = through_a_frame(message)
    assert type(received) is type(message)
    assert plain(received) == plain(message)
    assert plain(unpack(pack(message))) == plain(message)


def test_every_hot_message_is_exercised():
    def classes(value):
        found = {type(value)}
        if isinstance(value, (tuple, list)):
            for v in value:
                found |= classes(v)
        if isinstance(value, dict):
            for v in value.values():
                found |= classes(v)
        return found

    seen = set().union(*(classes(m) for m in MESSAGES))
    assert set(HOT) <= seen, f"not in MESSAGES: {sorted(c.__name__ for c in set(HOT) - seen)}"


def test_payloads_are_marked_out_of_band_when_packed_and_small_ones_stay_inline():
    def payload_of(message: Once) -> object:
        packed = pack(message)
        assert isinstance(packed, tuple)
        return packed[3][2]

    assert isinstance(payload_of(Once(1, CallContext("h"), Wire("xsf", b"x" * 5000))), pickle.PickleBuffer)
    small = payload_of(Once(1, CallContext("h"), Wire("xsf", memoryview(b"x" * 100))))
    assert small == b"x" * 100 and type(small) is bytes


def test_other_values_pass_through():
    assert unpack(pack(("echo", 1, b"x"))) == ("echo", 1, b"x")
