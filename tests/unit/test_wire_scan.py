"""Large messages are scanned, not parsed whole: the scan must read every request exactly as
protobuf does (any field order, repeats, unknown fields), leave the payloads in place, and
refuse what protobuf refuses; large outputs spliced around their payloads encode the same
message protobuf would."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiges.engine.items import DataItem
from aiges.engine.messages import CallContext, Expect, Spliced
from aiges.errors import AigesError
from aiges.protocol import loader_codec, wire_scan
from aiges.protocol.codecs import OutputNaming
from aiges.protocol.loader_codec import SPLICE_MIN, STREAM, XSF, LoaderCodec, LoaderEncoder, decode_frame
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session
from aiges.protocol.xsf_request import opens_session, parse_request

BIG = wire_scan.SCAN_MIN
texts = st.text(max_size=12)
maps = st.dictionaries(texts, texts, max_size=3)


def shuffled(chunks: list[tuple[str, bytes]], seed: int) -> bytes:
    """The fields in a random order, keeping the order among each repeated field's entries."""
    rng = random.Random(seed)
    queues: dict[str, list[bytes]] = {}
    for name, chunk in chunks:
        queues.setdefault(name, []).append(chunk)
    order = [name for name, _ in chunks]
    rng.shuffle(order)
    return b"".join(queues[name].pop(0) for name in order)


@settings(max_examples=40, deadline=None)
@given(
    op=texts,
    handle=texts,
    trace=texts,
    param=maps,
    sizes=st.lists(st.integers(0, 3), min_size=0, max_size=3),
    repeat_data=st.booleans(),
    seed=st.integers(),
)
def test_a_scanned_request_reads_as_protobuf_reads_it(op, handle, trace, param, sizes, repeat_data, seed):
    chunks = [
        ("op", ReqData(op=op).SerializeToString()),
        ("s", ReqData(s=Session(h=handle, t=trace)).SerializeToString()),
    ]
    chunks += [("param", ReqData(param={k: v}).SerializeToString()) for k, v in param.items()]
    for index, size in enumerate(sizes):
        meta = DataMeta(data=bytes([index]) * (size * BIG // 2), desc={"k": "v"}).SerializeToString()
        if repeat_data:  # a repeated singular field: the last one wins
            meta = DataMeta(data=b"first").SerializeToString() + meta
        chunks.append(("data", ReqData(data=[DataMeta.FromString(meta)]).SerializeToString()))
    chunks.append(("unknown", wire_scan.length_prefix(9, BIG) + b"f" * BIG))  # an unknown field: always large
    raw = shuffled(chunks, seed)
    scanned = parse_request(raw)
    parsed = ReqData.FromString(raw)
    assert (scanned.op, scanned.handle, scanned.trace, scanned.param) == (op, handle, trace, dict(parsed.param))
    expected = parsed.data[0].data if parsed.data else b""
    assert bytes(scanned.data) == expected
    if expected:
        assert isinstance(scanned.data, memoryview) and scanned.data.obj is raw  # in place, not copied


def test_a_truncated_large_request_is_10401():
    raw = ReqData(op="AIIn", data=[DataMeta(data=b"x" * BIG)]).SerializeToString()
    with pytest.raises(AigesError) as caught:
        parse_request(raw[:-10])
    assert caught.value.code == 10401


def test_groups_are_skipped_as_protobuf_skips_them():
    group = wire_scan.tag(9, wire_scan.SGROUP) + wire_scan.tag(1, 0) + b"\x05" + wire_scan.tag(9, wire_scan.EGROUP)
    raw = group + ReqData(op="AIIn", data=[DataMeta(data=b"y" * BIG)]).SerializeToString()
    assert ReqData.FromString(raw).op == "AIIn"
    assert parse_request(raw).op == "AIIn" and bytes(parse_request(raw).data) == b"y" * BIG


@pytest.mark.parametrize(
    "states",
    [[], [LoaderInput.ONCE], [LoaderInput.ONCE, LoaderInput.STREAM], [LoaderInput.STREAM, LoaderInput.ONCE]],
)
def test_opens_session_reads_the_last_state_of_a_large_frame(states):
    raw = b"".join(wire_scan.tag(3, wire_scan.VARINT) + wire_scan.varint(state) for state in states)
    raw += LoaderInput(pl=[Payload(data=b"p" * BIG)]).SerializeToString()
    expected = LoaderInput.FromString(raw).state != LoaderInput.ONCE
    assert opens_session(memoryview(raw)) is expected
    assert opens_session(raw) is expected


def big_input() -> LoaderInput:
    return LoaderInput(
        serviceId="svc",
        state=LoaderInput.ONCE,
        headers={"sid": "s1", "appid": "app"},
        params={"p": "1"},
        expect=[MetaDesc(name="out", dataType=MetaDesc.IMAGE, attribute={"encoding": "png"})],
        pl=[
            Payload(meta=MetaDesc(name="a", dataType=MetaDesc.AUDIO, attribute={"status": "1"}), data=b"a" * BIG),
            Payload(meta=MetaDesc(name="empty")),
            Payload(meta=MetaDesc(name="b", attribute={"rate": "16000"}), data=b"b" * 10),
        ],
        sync_id=7,
    )


def test_a_scanned_loader_input_is_the_parsed_one_with_its_payloads_in_place():
    raw = big_input().SerializeToString()
    message, payloads = decode_frame(memoryview(raw))
    parsed = LoaderInput.FromString(raw)
    assert payloads is not None
    assert [bytes(p) for p in payloads] == [p.data for p in parsed.pl]
    assert isinstance(payloads[0], memoryview) and payloads[0].obj is raw
    for payload in parsed.pl:
        payload.data = b""
    assert message == parsed
    decoded = LoaderCodec(XSF, ("sid",)).first(raw, CallContext("h"))
    assert [(i.key, bytes(i.data), i.type, i.status, i.desc) for i in decoded.items] == [
        ("a", b"a" * BIG, MetaDesc.AUDIO, 1, {"status": "1"}),
        ("empty", b"", 0, 3, {}),
        ("b", b"b" * 10, 0, 3, {"rate": "16000"}),
    ]
    assert decoded.sync_id == 7 and decoded.params == {"p": "1", "sid": "s1"} and decoded.once


def encoder(envelope: str) -> LoaderEncoder:
    naming = OutputNaming({"out": Expect(MetaDesc.IMAGE, {"encoding": "png"})})
    return LoaderEncoder("svc", envelope, CallContext("h", "t", "10.0.0.1:1"), naming)


ITEMS = [DataItem("out", b"o" * SPLICE_MIN, 0, 1, {"w": "4"}), DataItem("out", b"", 0, 2, {})]


@pytest.mark.parametrize("envelope", [XSF, STREAM])
@pytest.mark.parametrize("session", [False, True])
def test_a_spliced_output_is_the_message_protobuf_encodes(envelope, session, monkeypatch):
    encode = (lambda e: e.batch(ITEMS)[0]) if session else (lambda e: e.once(ITEMS))
    spliced = encode(encoder(envelope))
    assert isinstance(spliced, Spliced) and spliced.size == len(spliced.join())
    assert any(piece is ITEMS[0].data for piece in spliced.pieces)  # the payload is not copied in
    monkeypatch.setattr(loader_codec, "SPLICE_MIN", 1 << 40)  # the same output, encoded by protobuf
    protobuf = encode(encoder(envelope))
    assert isinstance(protobuf, bytes)
    reference = ResData if envelope == XSF else LoaderOutput
    assert reference.FromString(spliced.join()) == reference.FromString(protobuf)
    assert spliced.join() == protobuf


def test_spliced_session_batches_merge_into_the_fronts_resdata():
    output, ended = encoder(XSF).batch([DataItem("out", b"z" * SPLICE_MIN, 0, 2, {})])
    assert isinstance(output, Spliced) and ended
    merged = ResData.FromString(ResData(s=Session(h="front")).SerializeToString() + output.join())
    assert merged.s.h == "front"
    [payload] = LoaderOutput.FromString(merged.data[0].data).pl
    assert payload.data == b"z" * SPLICE_MIN and payload.meta.attribute["seq"] == "1"
