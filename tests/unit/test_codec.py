import pytest

from aiges.engine.types import DataItem
from aiges.errors import AigesError
from aiges.protocol import codec
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload


def make_input(**kwargs):
    return LoaderInput(
        state=LoaderInput.ONCE,
        headers={"sid": "s1", "appid": "app", "uid": "u"},
        params={"p": "1"},
        expect=[MetaDesc(name="out", dataType=MetaDesc.IMAGE, attribute={"encoding": "png"})],
        pl=[Payload(meta=MetaDesc(name="in", dataType=MetaDesc.AUDIO, attribute={"status": "1", "rate": "16000"}),
                    data=b"\x00\x01")],
        **kwargs,
    )


def test_params_take_header_pass_keys():
    assert codec.input_params(make_input(), ("sid", "appid")) == {"p": "1", "sid": "s1", "appid": "app"}
    message = make_input()
    message.params["sid"] = "mine"
    assert codec.input_params(message, ("sid",))["sid"] == "mine"


def test_items_keep_name_type_status_and_attributes():
    [item] = codec.input_items(make_input(), default_status=3)
    assert (item.key, item.data, item.type, item.status) == ("in", b"\x00\x01", 1, 1)
    assert item.desc == {"status": "1", "rate": "16000"}
    message = make_input()
    message.pl[0].meta.attribute["status"] = "junk"
    assert codec.input_items(message, default_status=3)[0].status == 3


def test_once_output_takes_name_and_type_from_expect():
    output = codec.once_output("svc", [DataItem("out", b"img", type=0, desc={"encoding": "jpg", "w": "4"})],
                               codec.expect_index(make_input()))
    assert output.status == LoaderOutput.ONCE and output.code == 0
    [payload] = output.pl
    assert payload.meta.name == "out"
    assert payload.meta.dataType == MetaDesc.IMAGE
    assert dict(payload.meta.attribute) == {"encoding": "png", "w": "4", "seq": "0", "status": "3"}


def test_an_unexpected_output_is_10106():
    with pytest.raises(AigesError) as failure:
        codec.once_output("svc", [DataItem("other", b"")], codec.expect_index(make_input()))
    assert failure.value.code == 10106
    assert "'other'" in failure.value.message and "out" in failure.value.message


def test_stream_batch_status_is_its_last_item():
    expect = codec.expect_index(make_input())
    output = codec.stream_output("svc", [DataItem("out", b"a", status=1), DataItem("out", b"b", status=2)], expect,
                                 {"out": 7})
    assert output.status == LoaderOutput.END
    assert [p.meta.attribute["seq"] for p in output.pl] == ["7", "7"]


def test_undecodable_input_is_10401():
    with pytest.raises(AigesError) as failure:
        codec.decode_input(b"\x0a\xff")
    assert failure.value.code == 10401
