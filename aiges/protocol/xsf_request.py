"""An xsf ``utils.ReqData`` as the front needs it: op, handle, trace, params, and the LoaderInput
it carries, undecoded, with the one fact the front decides on (a one-shot call or a session's
first frame: ``LoaderInput.state``; and the service it names, ``serviceId``, which routes it). The
payloads stay where they are; the worker decodes them.

A large request (``wire_scan.SCAN_MIN`` and up) is not parsed whole: protobuf would copy
``data[0].data`` twice (``wire_scan`` says why). Its top-level fields are scanned instead,
``data[0].data`` stays a memoryview slice of the request as grpc delivered it, and protobuf
parses the rest; ``state`` is read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from aiges.engine.messages import Payload
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import wire_scan
from aiges.protocol.v2_pb2 import LoaderInput
from aiges.protocol.xsf_pb2 import ReqData

REQ_DATA = 4  # ReqData.data
DATA_META_DATA = 1  # DataMeta.data
LOADER_INPUT_STATE = 3  # LoaderInput.state
LOADER_INPUT_SERVICE_ID = 1  # LoaderInput.serviceId


@dataclass(slots=True)
class XsfRequest:
    op: str
    handle: str
    trace: str
    param: dict[str, str]
    data: Payload
    """``data[0].data``: the serialized LoaderInput (empty when the request has none); a
    memoryview slice of the request when it is large."""


def parse_request(raw: bytes) -> XsfRequest:
    """The request's envelope (10401 if it is not a ReqData)."""
    try:
        if len(raw) < wire_scan.SCAN_MIN:
            request = ReqData.FromString(raw)
            data: Payload = request.data[0].data if request.data else b""
        else:
            request, data = _scan_request(memoryview(raw))
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"request is not a utils.ReqData: {exc}") from None
    return XsfRequest(request.op, request.s.h, request.s.t, dict(request.param), data)


def _scan_request(view: memoryview) -> tuple[ReqData, Payload]:
    """The ReqData without its ``data`` entries, and ``data[0].data`` in place."""
    entries = [field for field in wire_scan.fields(view) if field.number == REQ_DATA]
    data: Payload = b""
    for entry in entries:
        if entry.wire_type != wire_scan.LEN:
            raise DecodeError(f"ReqData.data has wire type {entry.wire_type}")
    if entries:
        first = entries[0]
        payload = wire_scan.last(view, DATA_META_DATA, wire_scan.LEN, first.value, first.end)
        if payload is not None:
            data = view[payload.value : payload.end]
    head = ReqData.FromString(wire_scan.without(view, [(e.start, e.end) for e in entries]))
    return head, data


def first_frame(data: Payload) -> tuple[bool, str]:
    """What a first frame's LoaderInput decides: whether it asks for a session (``state``
    STREAM) rather than a one-shot call (ONCE), and the service it names (``serviceId``, which
    routes it); 10401 if it is not a LoaderInput. A large one is scanned, not parsed."""
    try:
        if type(data) is bytes and len(data) < wire_scan.SCAN_MIN:
            message = LoaderInput.FromString(data)
            return message.state != LoaderInput.ONCE, message.serviceId
        with memoryview(data) as view:
            if view.nbytes < wire_scan.SCAN_MIN:
                message = LoaderInput.FromString(view.tobytes())
                return message.state != LoaderInput.ONCE, message.serviceId
            state = wire_scan.varint_field(view, LOADER_INPUT_STATE, LoaderInput.STREAM)
            return state != LoaderInput.ONCE, _scanned_service(view)
    except (DecodeError, UnicodeDecodeError) as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None


def _scanned_service(view: memoryview) -> str:
    field = wire_scan.last(view, LOADER_INPUT_SERVICE_ID, wire_scan.LEN)
    return "" if field is None else bytes(view[field.value : field.end]).decode("utf-8")


def opens_session(data: Payload) -> bool:
    """Whether a first frame's LoaderInput asks for a session rather than a one-shot call."""
    return first_frame(data)[0]


def service_named(data: Payload) -> str:
    """The ``serviceId`` of a LoaderInput (a runtime op's, a stream's first message); "" when
    there is none or it is not one (the op then fails on its own terms)."""
    if not data:
        return ""
    try:
        return first_frame(data)[1]
    except AigesError:
        return ""
