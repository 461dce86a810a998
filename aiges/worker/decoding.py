"""A call's frame decoded with the codec its front named (``aiges.protocol.codecs``)."""

from __future__ import annotations

from collections.abc import Iterable

from aiges.engine.items import DataItem
from aiges.engine.messages import CallContext, Frame, Items, Payload, Wire
from aiges.engine.shm import let_go
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.codecs import ITEMS, Codec, Decoded, codecs


class FrameDecoder:
    def __init__(self, header_pass: Iterable[str]) -> None:
        self.codecs: dict[str, Codec] = codecs(header_pass)

    def first(self, head: CallContext, frame: Frame) -> Decoded:
        """A call's or a session's first frame."""
        match frame:
            case Wire(codec=name, data=data):
                return self._codec(name).first(data, head)
            case Items():
                return self.codecs[ITEMS].first(frame, head)
        raise AigesError(ErrorCode.INVALID_DATA, f"a call cannot carry {type(frame).__name__}")

    def next(self, frame: Frame) -> tuple[list[DataItem], int]:
        """A session's later frame: its items and its sync_id."""
        match frame:
            case Wire(codec=name, data=data):
                return self._codec(name).next(data)
            case Items():
                return self.codecs[ITEMS].next(frame)
        raise AigesError(ErrorCode.INVALID_DATA, f"a session frame cannot be a {type(frame).__name__}")

    def _codec(self, name: str) -> Codec:
        codec = self.codecs.get(name)
        if codec is None:
            raise AigesError(ErrorCode.INVALID_OP, f"no codec {name!r} in the worker")
        return codec


def decoded_all(frame: Frame) -> None:
    """The frame is decoded for good: a buffer that came in a memfd of its own has been read out
    of it (its payloads are bytes now), so the memfd goes at once, not when the call is answered."""
    if type(frame) is Wire and type(frame.data) is bytes:
        return  # the usual small call: nothing to let go
    buffers: list[Payload] = [frame.data] if isinstance(frame, Wire) else [item.data for item in frame.items]
    for buffer in buffers:
        let_go(buffer)
