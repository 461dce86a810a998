"""Tensor <-> data item conversions of the Open Inference Protocol fronts."""

import numpy as np
import pytest

from aiges.engine.items import DataItem
from aiges.engine.messages import ItemsOutput
from aiges.errors import AigesError, http_status
from aiges.protocol import oip_tensors as oip

SCHEMA = {
    "meta": {
        "serviceId": "m",
        "m": {
            "input": {"image": {"dataType": "image"}, "x": {"dataType": "other"}},
            "accept": {"out": {"dataType": "text"}},
        },
    }
}


def test_bytes_round_trip_and_truncation():
    raw = oip.pack_bytes([b"a", b"", b"xyz"])
    assert oip.unpack_bytes("t", raw) == [b"a", b"", b"xyz"]
    with pytest.raises(AigesError, match="runs past the data"):
        oip.unpack_bytes("t", raw[:-1])
    with pytest.raises(AigesError, match="inside an element's length"):
        oip.unpack_bytes("t", raw + b"\x01")


def test_one_bytes_element_is_the_item_itself_and_numbers_stay_raw():
    image = oip.Tensor("image", "BYTES", [1], oip.pack_bytes([b"\x89PNG"]))
    array = np.arange(6, dtype="<f4").reshape(2, 3)
    x = oip.Tensor("x", "FP32", [2, 3], array.tobytes(), {"scale": "2"})
    frame = oip.items_frame(oip.Request([image, x], [], {"lang": "en", "sequence_id": "4"}), "m", SCHEMA, "sid-1")
    first, second = frame.items
    assert first.data == b"\x89PNG" and first.type == 2
    assert np.frombuffer(second.data, "<f4").reshape(2, 3).tolist() == array.tolist()
    assert second.desc == {"scale": "2", "datatype": "FP32", "shape": "2,3", "status": "3"}
    assert frame.params == {"lang": "en"} and frame.headers["sid"] == "sid-1"
    assert list(frame.expect) == ["out"]


@pytest.mark.parametrize(
    ("tensor", "error"),
    [
        (oip.Tensor("x", "FP32", [2], b"\x00" * 4), "needs 8 bytes, got 4"),
        (oip.Tensor("x", "BYTES", [2], oip.pack_bytes([b"a"])), "needs 2 BYTES elements, got 1"),
    ],
)
def test_inconsistent_tensors_are_rejected(tensor, error):
    with pytest.raises(AigesError, match=error) as raised:
        oip.items_frame(oip.Request([tensor], [], {}), "m", SCHEMA, "sid")
    assert http_status(raised.value.code) == 400


def test_outputs_become_tensors():
    output = ItemsOutput(
        3,
        [
            DataItem("out", b"hello", 0, 3, {"seq": "0", "status": "3"}),
            DataItem("n", np.array([1, 2], "<i8").tobytes(), 4, 3, {"datatype": "INT64", "shape": "1,2"}),
        ],
    )
    bad = ItemsOutput(3, [DataItem("w", b"123", 4, 3, {"datatype": "FP32"})])
    first, second = oip.output_tensors(output)
    assert (first.datatype, first.shape, oip.unpack_bytes("out", first.data)) == ("BYTES", [1], [b"hello"])
    assert (second.datatype, second.shape, oip.to_values(second)) == ("INT64", [1, 2], [1, 2])
    assert [t.name for t in oip.output_tensors(output, ["n"])] == ["n"]
    with pytest.raises(AigesError, match="3 bytes do not make a FP32 tensor") as raised:
        oip.output_tensors(bad)
    assert http_status(raised.value.code) == 500


@pytest.mark.parametrize(
    ("code", "status"),
    [(10009, 400), (10107, 400), (10101, 404), (10110, 503), (10102, 504), (10909, 500), (10109, 500)],
)
def test_http_status_of_aiges_codes(code, status):
    assert http_status(code) == status


def test_inputs_the_wrapper_does_not_declare_pass_through():
    frame = oip.items_frame(
        oip.Request([oip.Tensor("nope", "BYTES", [1], oip.pack_bytes([b"a"]))], [], {}), "m", SCHEMA, "sid"
    )
    assert [(i.key, i.data, i.type) for i in frame.items] == [("nope", b"a", 0)]
