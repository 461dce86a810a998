"""The user-facing SDK keeps the original's import names and value-object behaviour."""

from aiges.dto import DataListCls, DataListNode, Response, ResponseData, SessionCreateResponse
from aiges.sdk import (
    AudioBodyField,
    BooleanParamField,
    ImageBodyField,
    IntegerParamField,
    JsonBodyField,
    NumberParamField,
    StringBodyField,
    StringParamField,
    VideoBodyField,
    WrapperBase,
)
from aiges.types import DataEnd, DataOnce, Once


def test_response_data_len_follows_data():
    item = ResponseData()
    item.setData(b"abcd")
    assert item.len == 4
    item.data = b"ab"
    assert item.len == 2
    assert ResponseData(key="k", data=b"xyz").len == 3


def test_response_defaults_and_error():
    response = Response()
    assert len(response.list) == 1 and response.error_code == 0
    assert response.response_err(5) is response and response.error_code == 5
    assert SessionCreateResponse().handle == ""


def test_data_list_get():
    nodes = DataListCls([DataListNode("a", b"1"), DataListNode("b", b"22")])
    assert nodes.get("b").len == 2
    assert nodes.get("c") is None


def test_wrapper_fields_are_collected():
    class Req:
        p = StringParamField(key="p", enums=["x"])
        n = NumberParamField(key="n")
        i = IntegerParamField(key="i")
        b = BooleanParamField(key="b")
        img = ImageBodyField(key="img")
        aud = AudioBodyField(key="aud", sample_rate=16000)
        vid = VideoBodyField(key="vid")

    class Resp:
        out = StringBodyField(key="out")
        js = JsonBodyField(key="js", value={"a": 1})

    class Wrapper(WrapperBase):
        requestCls = Req()
        responseCls = Resp()

    mappings = Wrapper.__mappings__
    assert set(mappings["params"]) == {"p", "n", "i", "b"}
    assert set(mappings["inputs"]) == {"img", "aud", "vid"}
    assert set(mappings["accepts"]) == {"out", "js"}
    assert mappings["inputs"]["aud"].attrs["sample_rate"] == 16000
    assert (DataEnd, DataOnce, Once) == (2, 3, 3)
