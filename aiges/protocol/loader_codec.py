"""The codec of the xsf and native stream fronts: LoaderInput (protocol v2) in, LoaderOutput out.
Runs in the worker processes.

Decoding and encoding happen where the wrapper runs, not in the server process: the server only
routes raw frames, so it stays lean however large the payloads, and the codec work spreads over
the workers. A reply leaves the worker already encoded in the form its front sends on:

    "xsf"     a ``utils.ResData``: complete for a one-shot call; for a session's outputs only
              its ``data`` field, which the front sends after its own ResData fields - protobuf
              merges concatenated messages, so that is one ResData
    "stream"  a bare LoaderOutput, for ``aiges.v1.Session/Stream``

Outputs are named and numbered after the request's ``expect`` list (``codecs.OutputNaming``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.message import DecodeError

from aiges.engine.items import DataItem, DataStatus
from aiges.engine.messages import CallContext, Expect, Payload
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.codecs import Decoded, OutputNaming, app_id_of, batch_status, input_params
from aiges.protocol.envelope_pb2 import XsfReply
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ResData

XSF = "xsf"
STREAM = "stream"


def decode_input(raw: Payload) -> LoaderInput:
    try:
        return LoaderInput.FromString(cast(bytes, raw))  # any buffer: a ring's view is read in place
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None


def input_items(message: LoaderInput, default_status: int) -> list[DataItem]:
    items = []
    for payload in message.pl:
        meta = payload.meta
        attributes = dict(meta.attribute)
        items.append(
            DataItem(
                meta.name, payload.data, meta.dataType, _status(attributes.get("status"), default_status), attributes
            )
        )
    return items


def _status(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        return default
    return value if 0 <= value <= 3 else default


def wrap(output: LoaderOutput, envelope: str) -> bytes:
    if envelope == XSF:
        return ResData(data=[DataMeta(data=output.SerializeToString())]).SerializeToString()
    return output.SerializeToString()


def error_output(service_id: str, error: AigesError) -> LoaderOutput:
    return LoaderOutput(serviceId=service_id, code=error.code, err=error.message, status=LoaderOutput.END)


def status_output(service_id: str, status: int) -> LoaderOutput:
    return LoaderOutput(serviceId=service_id, code=0, status=cast(Any, status))


@dataclass
class LoaderEncoder:
    """A call's or a session's outputs as LoaderOutputs, in the envelope of its front. For "xsf"
    the LoaderOutput sits inside an XsfReply, which encodes exactly like a utils.ResData; a
    one-shot reply carries the request's head (handle, trace, peer address) and is the whole
    reply, a session batch leaves the front to put its own fields first."""

    service_id: str
    envelope: str
    head: CallContext
    naming: OutputNaming

    def _new(self, head: CallContext | None) -> tuple[XsfReply | LoaderOutput, LoaderOutput]:
        if self.envelope != XSF:
            output = LoaderOutput()
            return output, output
        root = XsfReply()
        if head is not None:
            root.s.h = head.tag
            root.s.t = head.trace
            root.s.sess["PeerAddr"] = head.peer
        return root, root.data.add().data

    def _fill(self, output: LoaderOutput, items: list[DataItem], numbered: bool) -> None:
        naming = self.naming
        for item in items:
            entry = naming.entry(item.key)
            meta = output.pl.add(data=item.data).meta
            meta.name = item.key
            meta.dataType = cast(Any, entry.data_type)
            attribute = meta.attribute
            if item.desc:
                attribute.update(item.desc)
            if entry.attributes:
                attribute.update(entry.attributes)
            attribute["seq"] = str(naming.number(item.key) if numbered else 0)
            attribute["status"] = str(item.status)

    def once(self, items: list[DataItem]) -> bytes:
        root, output = self._new(self.head)
        output.serviceId = self.service_id
        output.status = LoaderOutput.ONCE
        self._fill(output, items, False)
        return root.SerializeToString()

    def batch(self, items: list[DataItem]) -> tuple[bytes, bool]:
        status, ended = batch_status(items)
        root, output = self._new(None)
        output.serviceId = self.service_id
        output.status = cast(Any, status)
        self._fill(output, items, True)
        return root.SerializeToString(), ended


class LoaderCodec:
    def __init__(self, envelope: str, header_pass: Iterable[str]) -> None:
        self.envelope = envelope
        self.header_pass = tuple(header_pass)

    def first(self, data: Payload, head: CallContext) -> Decoded:
        """The first frame of a call or a session: it carries the params, headers and expect."""
        message = decode_input(data)
        once = message.state == LoaderInput.ONCE
        # the request's own attribute maps, not copies: an output overlays them
        expect = {e.name: tuple.__new__(Expect, (e.dataType, e.attribute)) for e in message.expect}
        return Decoded(
            once=once,
            params=input_params(message.params, message.headers, self.header_pass),
            items=input_items(message, DataStatus.ONCE if once else DataStatus.CONTINUE),
            sync_id=message.sync_id,
            encoder=LoaderEncoder(message.serviceId, self.envelope, head, OutputNaming(expect)),
            app_id=app_id_of(message.headers),
        )

    def next(self, data: Payload) -> tuple[list[DataItem], int]:
        message = decode_input(data)
        return input_items(message, DataStatus.CONTINUE), message.sync_id
