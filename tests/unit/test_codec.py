import pytest

from aiges.engine.types import DataItem
from aiges.errors import AigesError
from aiges.protocol import codec
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload
from aiges.protocol.xsf_pb2 import ResData, Session


def make_input(**kwargs) -> LoaderInput:
    return LoaderInput(
        serviceId="svc",
        headers={"sid": "s1", "appid": "app", "uid": "u"},
        params={"p": "1"},
        expect=[MetaDesc(name="out", dataType=MetaDesc.IMAGE, attribute={"encoding": "png"})],
        pl=[Payload(meta=MetaDesc(name="in", dataType=MetaDesc.AUDIO, attribute={"status": "1", "rate": "16000"}),
                    data=b"\x00\x01")],
        **kwargs,
    )


def first(message: LoaderInput, envelope=codec.STREAM, header_pass=("sid", "appid")) -> codec.Frame:
    return codec.V2Codec(header_pass).first(message.SerializeToString(), envelope)


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
    context = first(make_input(state=LoaderInput.ONCE)).context
    output = LoaderOutput.FromString(context.once([DataItem("out", b"img", 0, 3, {"encoding": "jpg", "w": "4"})]))
    assert output.status == LoaderOutput.ONCE and output.code == 0 and output.serviceId == "svc"
    [payload] = output.pl
    assert payload.meta.name == "out"
    assert payload.meta.dataType == MetaDesc.IMAGE
    assert dict(payload.meta.attribute) == {"encoding": "png", "w": "4", "seq": "0", "status": "3"}


def test_an_unexpected_output_is_10106():
    context = first(make_input()).context
    with pytest.raises(AigesError) as failure:
        context.once([DataItem("other", b"")])
    assert failure.value.code == 10106
    assert "'other'" in failure.value.message and "out" in failure.value.message


def test_stream_batches_count_seq_and_end_with_their_last_item():
    context = first(make_input()).context
    body, ended = context.batch([DataItem("out", b"a", status=1)])
    assert not ended and LoaderOutput.FromString(body).status == LoaderOutput.CONTINUE
    body, ended = context.batch([DataItem("out", b"b", status=1), DataItem("out", b"c", status=2)])
    output = LoaderOutput.FromString(body)
    assert ended and output.status == LoaderOutput.END
    assert [p.meta.attribute["seq"] for p in output.pl] == ["2", "3"]


def test_the_xsf_envelope_merges_into_the_fronts_resdata():
    context = first(make_input(state=LoaderInput.ONCE), envelope=codec.XSF).context
    tail = context.once([DataItem("out", b"img")])
    head = ResData(code=0, s=Session(h="handle", sess={"PeerAddr": "1.2.3.4:5"})).SerializeToString()
    reply = ResData.FromString(head + tail)
    assert reply.s.h == "handle" and reply.s.sess["PeerAddr"] == "1.2.3.4:5"
    [meta] = reply.data
    assert LoaderOutput.FromString(meta.data).pl[0].data == b"img"


def test_undecodable_input_is_10401():
    with pytest.raises(AigesError) as failure:
        codec.V2Codec(()).first(b"\x0a\xff", codec.XSF)
    assert failure.value.code == 10401
