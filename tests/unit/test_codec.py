"""The codecs a worker decodes calls with: LoaderInput (xsf and stream envelopes) and items."""

import pytest

from aiges.engine.items import DataItem
from aiges.engine.messages import CallContext, Expect, Items, ItemsOutput
from aiges.errors import AigesError
from aiges.protocol.codecs import Decoded, ItemsCodec
from aiges.protocol.loader_codec import STREAM, XSF, LoaderCodec
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload
from aiges.protocol.xsf_pb2 import ResData, Session


def make_input(**kwargs) -> LoaderInput:
    return LoaderInput(
        serviceId="svc",
        headers={"sid": "s1", "appid": "app", "uid": "u"},
        params={"p": "1"},
        expect=[MetaDesc(name="out", dataType=MetaDesc.IMAGE, attribute={"encoding": "png"})],
        pl=[
            Payload(
                meta=MetaDesc(name="in", dataType=MetaDesc.AUDIO, attribute={"status": "1", "rate": "16000"}),
                data=b"\x00\x01",
            )
        ],
        **kwargs,
    )


def wire(body: bytes | ItemsOutput) -> bytes:
    """A loader codec's reply: serialised bytes (the items codec answers an ItemsOutput)."""
    assert isinstance(body, bytes), body
    return body


def first(message: LoaderInput, envelope=STREAM, header_pass=("sid", "appid")) -> Decoded:
    return LoaderCodec(envelope, header_pass).first(message.SerializeToString(), CallContext("tag"))


def test_params_take_header_pass_keys():
    assert first(make_input()).params == {"p": "1", "sid": "s1", "appid": "app"}
    message = make_input()
    message.params["sid"] = "mine"
    assert first(message, header_pass=("sid",)).params["sid"] == "mine"


def test_items_keep_name_type_status_and_attributes():
    frame = first(make_input(state=LoaderInput.ONCE, sync_id=4))
    assert frame.once and frame.sync_id == 4
    [item] = frame.items
    assert (item.key, item.data, item.type, item.status) == ("in", b"\x00\x01", 1, 1)
    assert item.desc == {"status": "1", "rate": "16000"}
    message = make_input()
    message.pl[0].meta.attribute["status"] = "junk"
    assert first(message).items[0].status == 1
    message.state = LoaderInput.ONCE
    assert first(message).items[0].status == 3


def test_once_output_takes_name_and_type_from_expect():
    context = first(make_input(state=LoaderInput.ONCE)).encoder
    output = LoaderOutput.FromString(wire(context.once([DataItem("out", b"img", 0, 3, {"encoding": "jpg", "w": "4"})])))
    assert output.status == LoaderOutput.ONCE and output.code == 0 and output.serviceId == "svc"
    [payload] = output.pl
    assert payload.meta.name == "out"
    assert payload.meta.dataType == MetaDesc.IMAGE
    assert dict(payload.meta.attribute) == {"encoding": "png", "w": "4", "seq": "0", "status": "3"}


def test_an_unexpected_output_is_10106():
    context = first(make_input()).encoder
    with pytest.raises(AigesError) as failure:
        context.once([DataItem("other", b"")])
    assert failure.value.code == 10106
    assert "'other'" in failure.value.message and "out" in failure.value.message


def test_stream_batches_count_seq_and_end_with_their_last_item():
    context = first(make_input()).encoder
    body, ended = context.batch([DataItem("out", b"a", status=1)])
    assert not ended and LoaderOutput.FromString(wire(body)).status == LoaderOutput.CONTINUE
    body, ended = context.batch([DataItem("out", b"b", status=1), DataItem("out", b"c", status=2)])
    output = LoaderOutput.FromString(wire(body))
    assert ended and output.status == LoaderOutput.END
    assert [p.meta.attribute["seq"] for p in output.pl] == ["2", "3"]


def test_the_xsf_envelope_merges_into_the_fronts_resdata():
    context = first(make_input(), envelope=XSF).encoder
    tail, _ = context.batch([DataItem("out", b"img", status=1)])
    head = ResData(code=0, s=Session(h="handle", sess={"PeerAddr": "1.2.3.4:5"})).SerializeToString()
    reply = ResData.FromString(head + wire(tail))
    assert reply.s.h == "handle" and reply.s.sess["PeerAddr"] == "1.2.3.4:5"
    [meta] = reply.data
    assert LoaderOutput.FromString(meta.data).pl[0].data == b"img"


def test_undecodable_input_is_10401():
    with pytest.raises(AigesError) as failure:
        LoaderCodec(XSF, ()).first(b"\x0a\xff", CallContext("tag"))
    assert failure.value.code == 10401


def test_a_one_shot_xsf_reply_is_the_whole_resdata_with_the_requests_head():
    codec = LoaderCodec(XSF, ())
    decoded = codec.first(
        make_input(state=LoaderInput.ONCE).SerializeToString(), CallContext("h1", "trace", "1.2.3.4:5")
    )
    reply = ResData.FromString(wire(decoded.encoder.once([DataItem("out", b"img")])))
    assert (reply.s.h, reply.s.t, reply.s.sess["PeerAddr"]) == ("h1", "trace", "1.2.3.4:5")


def test_the_items_codec_names_and_numbers_outputs_as_the_loader_codec_does():
    frame = Items(
        # a ring view, as a worker receives it (DataItem.data is typed bytes until the payload alias of issue 24)
        [DataItem("in", memoryview(b"ab"), 1, 1, {"rate": "16000"})],  # type: ignore[arg-type]
        {"p": "1"},
        {"sid": "s1", "app_id": "a"},
        {"out": Expect(2, {"encoding": "png"})},
        "svc",
    )
    decoded = ItemsCodec(("sid",)).first(frame, CallContext("tag"))
    assert decoded.params == {"p": "1", "sid": "s1"} and decoded.app_id == "a"
    assert type(decoded.items[0].data) is bytes  # a ring view is copied out for the wrapper to keep
    output, ended = decoded.encoder.batch([DataItem("out", b"x", 0, 2, {"w": "4"})])
    assert isinstance(output, ItemsOutput) and ended and output.status == 2
    [item] = output.items
    assert (item.key, item.type, item.desc) == ("out", 2, {"w": "4", "encoding": "png", "seq": "1", "status": "2"})
    with pytest.raises(AigesError) as failure:
        decoded.encoder.once([DataItem("other", b"")])
    assert failure.value.code == 10106
