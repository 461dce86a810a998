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

import numpy as np

from aiges.engine.types import TYPE_CODES
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc

DTYPES: dict[str, str | None] = {
    "BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BF16": None, "BYTES": None,
}
ITEM_SIZES = {"BF16": 2}
STREAM_ATTRIBUTES = frozenset({"status", "seq"})  # aiges' own bookkeeping, not tensor parameters
RESERVED_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
                                 "binary_data_output", "binary_data", "binary_data_size", "headers"})


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
            raise invalid(f"tensor {tensor.name!r}: shape {tensor.shape} needs {tensor.elements} "
                          f"BYTES elements, got {count}")
        return
    expected = tensor.elements * item_size(tensor.datatype)
    if len(tensor.data) != expected:
        raise invalid(f"tensor {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs {expected} "
                      f"bytes, got {len(tensor.data)}")


def from_values(name: str, datatype: str, shape: list[int], values: list) -> bytes:
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


def to_values(tensor: Tensor) -> list:
    """Raw bytes -> a flat list of JSON values (BYTES as text)."""
    if tensor.datatype == "BYTES":
        return [e.decode("utf-8", "replace") for e in unpack_bytes(tensor.name, tensor.data)]
    dtype = DTYPES[tensor.datatype]
    if dtype is None:
        raise invalid(f"tensor {tensor.name!r}: {tensor.datatype} can only be returned raw (binary)")
    return np.frombuffer(tensor.data, dtype=dtype).tolist()


def declared(schema: Mapping | None, kind: str) -> dict[str, str]:
    """The wrapper's declared ``input`` or ``accept`` (output) names -> data type names ('text', ...)."""
    if not schema:
        return {}
    meta = schema["meta"]
    return {name: spec.get("dataType", "text") for name, spec in meta.get(meta["serviceId"], {}).get(kind, {}).items()}


def declared_inputs(schema: Mapping | None) -> dict[str, str]:
    return declared(schema, "input")


def declared_outputs(schema: Mapping | None) -> dict[str, str]:
    return declared(schema, "accept")


@dataclass
class Request:
    """One inference request, whichever front it came through."""

    tensors: list[Tensor]
    outputs: list[str]
    parameters: dict[str, str]


def loader_input(request: Request, service_id: str, schema: Mapping | None, tag: str, *,
                 state: int = LoaderInput.ONCE, status: int = 3, first: bool = True) -> LoaderInput:
    """The LoaderInput a request makes. ``first``: it carries the params and expect list (a
    one-shot call, or the first request of a session)."""
    message = LoaderInput(serviceId=service_id, state=state)
    types = declared_inputs(schema)
    for tensor in request.tensors:
        check_raw_size(tensor)
        payload = message.pl.add()
        meta = payload.meta
        meta.name = tensor.name
        if tensor.datatype == "BYTES" and tensor.elements == 1:
            payload.data = unpack_bytes(tensor.name, tensor.data)[0]
            meta.dataType = TYPE_CODES.get(types.get(tensor.name, "text"), MetaDesc.TEXT)
        else:
            payload.data = tensor.data
            meta.dataType = TYPE_CODES.get(types.get(tensor.name, "other"), MetaDesc.OTHER)
        meta.attribute.update(tensor.parameters)
        meta.attribute["datatype"] = tensor.datatype
        meta.attribute["shape"] = ",".join(map(str, tensor.shape))
        meta.attribute["status"] = str(status)
    if first:
        message.headers["sid"] = tag
        message.params.update({k: v for k, v in request.parameters.items() if k not in RESERVED_PARAMETERS})
        produced = declared_outputs(schema)
        for name in dict.fromkeys([*produced, *request.outputs]):
            message.expect.add(name=name, dataType=TYPE_CODES.get(produced.get(name, "text"), MetaDesc.TEXT))
    return message


def output_tensors(output: LoaderOutput, requested: Iterable[str] = ()) -> list[Tensor]:
    """The output's items as tensors; only the ``requested`` ones when any are named."""
    wanted = set(requested)
    tensors = []
    for payload in output.pl:
        if wanted and payload.meta.name not in wanted:
            continue
        attributes = {k: v for k, v in payload.meta.attribute.items() if k not in STREAM_ATTRIBUTES}
        datatype = attributes.pop("datatype", "BYTES")
        shape_text = attributes.pop("shape", "")
        if datatype in DTYPES and datatype != "BYTES":
            tensors.append(numeric_output(payload.meta.name, datatype, shape_text, payload.data, attributes))
        else:
            tensors.append(Tensor(payload.meta.name, "BYTES", [1], pack_bytes([payload.data]), attributes))
    return tensors


def numeric_output(name: str, datatype: str, shape_text: str, data: bytes, attributes: dict) -> Tensor:
    size = item_size(datatype)
    try:
        shape = [int(d) for d in shape_text.split(",") if d.strip()] if shape_text else [len(data) // size]
    except ValueError:
        raise AigesError(ErrorCode.INVALID_OUTPUT, f"wrapper output {name!r}: shape {shape_text!r} is not "
                                                   "a list of integers") from None
    if math.prod(shape) * size != len(data):
        raise AigesError(ErrorCode.INVALID_OUTPUT, f"wrapper output {name!r}: {len(data)} bytes do not make "
                                                   f"a {datatype} tensor of shape {shape}")
    return Tensor(name, datatype, shape, data, attributes)


def parse_flag(value: str | bool | None) -> bool:
    return value is True or str(value).lower() in ("true", "1")


@dataclass(frozen=True)
class Model:
    """The one model a server serves: its wrapper's serviceId, version and declarations."""

    name: str
    version: str
    schema: Mapping | None
    sessions: bool

    def check(self, name: str, version: str = "") -> None:
        """404 for another model's name or version."""
        if name != self.name or version not in ("", self.version):
            wanted = f"{name!r}" + (f" version {version!r}" if version else "")
            raise ModelNotFound(f"model {wanted} is not served here; this server serves {self.name!r} "
                                f"version {self.version!r}")

    def metadata(self) -> dict:
        """ModelMetadata: declared inputs and outputs, each one BYTES element."""
        def tensors(declared: dict[str, str]) -> list[dict]:
            return [{"name": name, "datatype": "BYTES", "shape": [1]} for name in declared]

        return {"name": self.name, "versions": [self.version], "platform": "aiges",
                "inputs": tensors(declared_inputs(self.schema)), "outputs": tensors(declared_outputs(self.schema))}

    def check_outputs(self, requested: Iterable[str]) -> None:
        declared = declared_outputs(self.schema)
        unknown = [name for name in requested if declared and name not in declared]
        if unknown:
            raise invalid(f"unknown output {unknown[0]!r}; {self.name} produces {', '.join(declared)}")


class ModelNotFound(Exception):
    pass
