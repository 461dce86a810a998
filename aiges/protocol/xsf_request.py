"""An xsf ``utils.ReqData`` as the front needs it: op, handle, trace, params, and the LoaderInput
it carries, undecoded, with the one fact the front decides on (a one-shot call or a session's
first frame: ``LoaderInput.state``). The payloads stay where they are; the worker decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from aiges.engine.messages import Payload
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.v2_pb2 import LoaderInput
from aiges.protocol.xsf_pb2 import ReqData


@dataclass(slots=True)
class XsfRequest:
    op: str
    handle: str
    trace: str
    param: dict[str, str]
    data: Payload
    """``data[0].data``: the serialized LoaderInput (empty when the request has none)."""


def parse_request(raw: bytes) -> XsfRequest:
    """The request's envelope (10401 if it is not a ReqData)."""
    try:
        request = ReqData.FromString(raw)
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"request is not a utils.ReqData: {exc}") from None
    return XsfRequest(
        request.op, request.s.h, request.s.t, dict(request.param), request.data[0].data if request.data else b""
    )


def opens_session(data: Payload) -> bool:
    """Whether a first frame's LoaderInput asks for a session (``state`` STREAM) rather than a
    one-shot call (ONCE); 10401 if it is not a LoaderInput."""
    try:
        message = LoaderInput.FromString(bytes(data) if not isinstance(data, bytes) else data)
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None
    return message.state != LoaderInput.ONCE
