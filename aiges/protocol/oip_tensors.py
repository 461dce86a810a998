"""Open Inference Protocol (KServe v2) tensors <-> aiges data items, for the gRPC and REST fronts.

One tensor is one data item, named by the tensor. What the item holds:

- ``BYTES`` with one element: that element (a text, an image file, ...), as the wrapper would get
  it from an xsf client; with several, the tensor's raw form (each element as a 4-byte
  little-endian length and its bytes).
- every other datatype (``UINT8``, ``FP32``, ...): the tensor's raw little-endian bytes.

The item's attributes keep ``datatype`` and ``shape`` ("2,3"), so a wrapper can rebuild the array
(``numpy.frombuffer(data, "<f4").reshape(2, 3)``), plus the tensor's own parameters. Its data type
is the one the wrapper declares for that input, else TEXT for BYTES and OTHER for the rest. A
tensor the wrapper does not declare is passed on too, as on every other front.

Outputs go the other way: an item whose attributes carry a numeric ``datatype`` (and ``shape``)
becomes that tensor; any other item becomes a ``BYTES`` tensor of shape [1] holding its data.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiges.engine.items import TYPE_CODES, DataItem, DataType
from aiges.engine.messages import Expect, Items, ItemsOutput
from aiges.errors import AigesError, ErrorCode
from aiges.schema import declared_inputs, declared_outputs

DTYPES: dict[str, str | None] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": None,
    "BYTES": None,
}
ITEM_SIZES = {"BF16": 2}
STREAM_ATTRIBUTES = frozenset({"status", "seq"})  # aiges' own bookkeeping, not tensor parameters
RESERVED_PARAMETERS = frozenset(
    {
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "binary_data_output",
        "binary_data",
        "binary_data_size",
        "headers",
    }
)


def invalid(message: str) -> AigesError:
    return AigesError(ErrorCode.INVALID_DATA, message)


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: bytes
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def item_size(datatype: str) -> int:
    dtype = DTYPES[datatype]
    return np.dtype(dtype).itemsize if dtype else ITEM_SIZES[datatype]


def check_datatype(name: str, datatype: str) -> None:
    if datatype not in DTYPES:
        raise invalid(f"tensor {name!r}: unknown datatype {datatype!r} (one of {', '.join(DTYPES)})")


def check_shape(name: str, shape: Iterable[int]) -> list[int]:
    shape = [int(d) for d in shape]
    if any(d < 0 for d in shape):
        raise invalid(f"tensor {name!r}: shape {shape} has a negative dimension")
    return shape


def pack_bytes(elements: Iterable[bytes]) -> bytes:
    """BYTES elements -> the raw form: each as a little-endian uint32 length and its bytes."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def unpack_bytes(name: str, raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise invalid(f"tensor {name!r}: BYTES data ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise invalid(f"tensor {name!r}: BYTES element of {size} bytes runs past the data")
        elements.append(bytes(view[offset : offset + size]))
        offset += size
    return elements


def check_raw_size(tensor: Tensor) -> None:
    """The raw data has exactly as many elements as the shape says."""
    if tensor.datatype == "BYTES":
        count = len(unpack_bytes(tensor.name, tensor.data))
        if count != tensor.elements:
            raise invalid(
                f"tensor {tensor.name!r}: shape {tensor.shape} needs {tensor.elements} BYTES elements, got {count}"
            )
        return
    expected = tensor.elements * item_size(tensor.datatype)
    if len(tensor.data) != expected:
        raise invalid(
            f"tensor {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs {expected} "
            f"bytes, got {len(tensor.data)}"
        )


def from_values(name: str, datatype: str, shape: list[int], values: list[Any]) -> bytes:
    """Typed values (JSON ``data``, or gRPC ``contents``) -> raw bytes."""
    check_datatype(name, datatype)
    if datatype == "BYTES":
        return pack_bytes(v if isinstance(v, bytes) else str(v).encode() for v in values)
    dtype = DTYPES[datatype]
    if dtype is None:
        raise invalid(f"tensor {name!r}: {datatype} data must be sent raw (binary), not as values")
    try:
        array = np.asarray(values, dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise invalid(f"tensor {name!r}: data is not {datatype}: {exc}") from None
    return array.tobytes()


def to_values(tensor: Tensor) -> list[Any]:
    """Raw bytes -> a flat list of JSON values (BYTES as text)."""
    if tensor.datatype == "BYTES":
        return [e.decode("utf-8", "replace") for e in unpack_bytes(tensor.name, tensor.data)]
    dtype = DTYPES[tensor.datatype]
    if dtype is None:
        raise invalid(f"tensor {tensor.name!r}: {tensor.datatype} can only be returned raw (binary)")
    values: list[Any] = np.frombuffer(tensor.data, dtype=dtype).tolist()
    return values


@dataclass
class Request:
    """One inference request, whichever front it came through."""

    tensors: list[Tensor]
    outputs: list[str]
    parameters: dict[str, str]


def items_frame(
    request: Request,
    service_id: str,
    schema: Mapping[str, Any] | None,
    tag: str,
    *,
    status: int = 3,
    first: bool = True,
) -> Items:
    """The engine items a request makes. ``first``: it carries the params and the expect list (a
    one-shot call, or the first request of a session)."""
    types = declared_inputs(schema)
    items = []
    for tensor in request.tensors:
        check_raw_size(tensor)
        if tensor.datatype == "BYTES" and tensor.elements == 1:
            data = unpack_bytes(tensor.name, tensor.data)[0]
            data_type = TYPE_CODES.get(types.get(tensor.name, "text"), DataType.TEXT)
        else:
            data = tensor.data
            data_type = TYPE_CODES.get(types.get(tensor.name, "other"), DataType.OTHER)
        attributes = {
            **tensor.parameters,
            "datatype": tensor.datatype,
            "shape": ",".join(map(str, tensor.shape)),
            "status": str(status),
        }
        items.append(DataItem(tensor.name, data, data_type, status, attributes))
    if not first:
        return Items(items, {}, {}, {}, service_id)
    params = {k: v for k, v in request.parameters.items() if k not in RESERVED_PARAMETERS}
    produced = declared_outputs(schema)
    expect = {
        name: Expect(TYPE_CODES.get(produced.get(name, "text"), DataType.TEXT), {})
        for name in dict.fromkeys([*produced, *request.outputs])
    }
    return Items(items, params, {"sid": tag}, expect, service_id)


def output_tensors(output: ItemsOutput, requested: Iterable[str] = ()) -> list[Tensor]:
    """The output's items as tensors; only the ``requested`` ones when any are named."""
    wanted = set(requested)
    tensors = []
    for item in output.items:
        if wanted and item.key not in wanted:
            continue
        attributes = {k: v for k, v in item.desc.items() if k not in STREAM_ATTRIBUTES}
        datatype = attributes.pop("datatype", "BYTES")
        shape_text = attributes.pop("shape", "")
        data = bytes(item.data)
        if datatype in DTYPES and datatype != "BYTES":
            tensors.append(numeric_output(item.key, datatype, shape_text, data, attributes))
        else:
            tensors.append(Tensor(item.key, "BYTES", [1], pack_bytes([data]), attributes))
    return tensors


def numeric_output(name: str, datatype: str, shape_text: str, data: bytes, attributes: dict[str, str]) -> Tensor:
    size = item_size(datatype)
    try:
        shape = [int(d) for d in shape_text.split(",") if d.strip()] if shape_text else [len(data) // size]
    except ValueError:
        raise AigesError(
            ErrorCode.INVALID_OUTPUT, f"wrapper output {name!r}: shape {shape_text!r} is not a list of integers"
        ) from None
    if math.prod(shape) * size != len(data):
        raise AigesError(
            ErrorCode.INVALID_OUTPUT,
            f"wrapper output {name!r}: {len(data)} bytes do not make a {datatype} tensor of shape {shape}",
        )
    return Tensor(name, datatype, shape, data, attributes)


def parse_flag(value: str | bool | None) -> bool:
    return value is True or str(value).lower() in ("true", "1")
