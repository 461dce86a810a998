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

Large messages are neither parsed nor built whole by protobuf, which copies every payload it
touches (``wire_scan``): a LoaderInput of ``wire_scan.SCAN_MIN`` and up is scanned, its payloads
left as views of the buffer it arrived in (or, from a memfd, read into bytes of their own with
``pread``); outputs of ``SPLICE_MIN`` and up are encoded as ``Spliced`` pieces: protobuf encodes
everything but the payloads (a length-delimited field is its tag, its length and its bytes), and
the payloads follow as they are, written straight to where the reply travels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.message import DecodeError

from aiges.engine.items import DataItem, DataStatus, payload_size
from aiges.engine.messages import CallContext, Expect, Output, Payload, Spliced
from aiges.engine.shm import copy_out, part
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import wire_scan
from aiges.protocol.codecs import Decoded, OutputNaming, app_id_of, batch_status, input_params
from aiges.protocol.envelope_pb2 import XsfReply
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc
from aiges.protocol.xsf_pb2 import DataMeta, ResData

XSF = "xsf"
STREAM = "stream"
SPLICE_MIN = 64 << 10
"""Outputs whose payloads add up to this many bytes are encoded as ``Spliced`` pieces."""

INPUT_PL = 7  # LoaderInput.pl
PAYLOAD_DATA = 2  # Payload.data
OUTPUT_PL = 5  # LoaderOutput.pl
PAYLOAD_META = 1  # Payload.meta
REPLY_DATA = 5  # XsfReply.data (ResData.data)
DATA_META_DATA = 1  # XsfDataMeta.data (DataMeta.data)


def decode_input(raw: Payload) -> LoaderInput:
    """The LoaderInput, parsed whole by protobuf (its payloads copied into it)."""
    try:
        return LoaderInput.FromString(cast(bytes, raw))  # any buffer: a ring's view is read in place
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None


def decode_frame(raw: Payload) -> tuple[LoaderInput, list[Payload] | None]:
    """The LoaderInput, and for a large one (scanned) its payloads' data, in place (its ``pl``
    entries hold none then)."""
    try:
        if type(raw) is not bytes or len(raw) >= wire_scan.SCAN_MIN:
            with memoryview(raw) as view:
                if view.nbytes >= wire_scan.SCAN_MIN:
                    return _scan_input(view)
        return LoaderInput.FromString(cast(bytes, raw)), None  # any buffer: a ring's view is read in place
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None


def _scan_input(view: memoryview) -> tuple[LoaderInput, list[Payload]]:
    """Protobuf parses the LoaderInput with its payloads' data cut out; the data stay in place."""
    head: list[bytes | memoryview] = []
    data: list[Payload] = []
    pos = 0
    for field in wire_scan.fields(view):
        if field.number != INPUT_PL:
            continue
        if field.wire_type != wire_scan.LEN:
            raise DecodeError(f"LoaderInput.pl has wire type {field.wire_type}")
        values = [f for f in wire_scan.fields(view, field.value, field.end) if f.number == PAYLOAD_DATA]
        if any(f.wire_type != wire_scan.LEN for f in values):
            raise DecodeError("Payload.data is not length-delimited")
        data.append(part(view, values[-1].value, values[-1].end) if values else b"")
        entry = wire_scan.without(
            view[field.value : field.end], [(f.start - field.value, f.end - field.value) for f in values]
        )
        head += [view[pos : field.start], wire_scan.length_prefix(INPUT_PL, len(entry)), entry]
        pos = field.end
    head.append(view[pos:])
    return LoaderInput.FromString(b"".join(head)), data


def input_items(message: LoaderInput, default_status: int, data: list[Payload] | None = None) -> list[DataItem]:
    """The payloads as items; ``data`` their data when ``message`` was scanned."""
    items = []
    for index, payload in enumerate(message.pl):
        meta = payload.meta
        attributes = dict(meta.attribute)
        items.append(
            DataItem(
                meta.name,
                payload.data if data is None else data[index],
                meta.dataType,
                _status(attributes.get("status"), default_status),
                attributes,
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

    def _meta(self, meta: MetaDesc, item: DataItem, numbered: bool) -> None:
        naming = self.naming
        entry = naming.entry(item.key)
        meta.name = item.key
        meta.dataType = cast(Any, entry.data_type)
        attribute = meta.attribute
        if item.desc:
            attribute.update(item.desc)
        if entry.attributes:
            attribute.update(entry.attributes)
        attribute["seq"] = str(naming.number(item.key) if numbered else 0)
        attribute["status"] = str(item.status)

    def _encode(self, head: CallContext | None, status: int, items: list[DataItem], numbered: bool) -> Output:
        total = 0
        for item in items:
            data = item.data
            total += len(data) if type(data) is bytes else payload_size(data)
        if total >= SPLICE_MIN:
            return self._splice(head, status, items, numbered)
        root, output = self._new(head)
        output.serviceId = self.service_id
        output.status = cast(Any, status)
        naming = self.naming
        add = output.pl.add
        for item in items:  # _meta, inlined: this is the path of every small call
            data = item.data
            entry = naming.entry(item.key)
            meta = add(data=data if type(data) is bytes else copy_out(data)).meta
            meta.name = item.key
            meta.dataType = cast(Any, entry.data_type)
            attribute = meta.attribute
            if item.desc:
                attribute.update(item.desc)
            if entry.attributes:
                attribute.update(entry.attributes)
            attribute["seq"] = str(naming.number(item.key) if numbered else 0)
            attribute["status"] = str(item.status)
        return root.SerializeToString()

    def _splice(self, head: CallContext | None, status: int, items: list[DataItem], numbered: bool) -> Spliced:
        """The same bytes as ``_encode``'s, with the payloads not copied in: protobuf encodes the
        rest, the framing of each payload is written here."""
        pieces: list[Payload] = []
        size = 0
        framing = [LoaderOutput(serviceId=self.service_id, status=cast(Any, status)).SerializeToString()]
        for item in items:
            meta = MetaDesc()
            self._meta(meta, item, numbered)
            encoded = meta.SerializeToString()
            n = payload_size(item.data)
            data_head = wire_scan.length_prefix(PAYLOAD_DATA, n) if n else b""
            entry = len(encoded) + len(wire_scan.length_prefix(PAYLOAD_META, len(encoded))) + len(data_head) + n
            framing += [wire_scan.length_prefix(OUTPUT_PL, entry), wire_scan.length_prefix(PAYLOAD_META, len(encoded))]
            framing += [encoded, data_head]
            if n:
                joined = b"".join(framing)
                pieces += [joined, item.data]
                size += len(joined) + n
                framing = []
        if framing:
            joined = b"".join(framing)
            pieces.append(joined)
            size += len(joined)
        if self.envelope != XSF:
            return Spliced(tuple(pieces), size)
        root = XsfReply()
        if head is not None:
            root.s.h = head.tag
            root.s.t = head.trace
            root.s.sess["PeerAddr"] = head.peer
        meta_entry = wire_scan.length_prefix(DATA_META_DATA, size)
        envelope = root.SerializeToString() + wire_scan.length_prefix(REPLY_DATA, len(meta_entry) + size) + meta_entry
        return Spliced((envelope, *pieces), len(envelope) + size)

    def once(self, items: list[DataItem]) -> Output:
        return self._encode(self.head, LoaderOutput.ONCE, items, False)

    def batch(self, items: list[DataItem]) -> tuple[Output, bool]:
        status, ended = batch_status(items)
        return self._encode(None, status, items, True), ended


class LoaderCodec:
    def __init__(self, envelope: str, header_pass: Iterable[str]) -> None:
        self.envelope = envelope
        self.header_pass = tuple(header_pass)

    def first(self, data: Payload, head: CallContext) -> Decoded:
        """The first frame of a call or a session: it carries the params, headers and expect."""
        message, payloads = decode_frame(data)
        once = message.state == LoaderInput.ONCE
        # the request's own attribute maps, not copies: an output overlays them
        expect = {e.name: tuple.__new__(Expect, (e.dataType, e.attribute)) for e in message.expect}
        return Decoded(
            once=once,
            params=input_params(message.params, message.headers, self.header_pass),
            items=input_items(message, DataStatus.ONCE if once else DataStatus.CONTINUE, payloads),
            sync_id=message.sync_id,
            encoder=LoaderEncoder(message.serviceId, self.envelope, head, OutputNaming(expect)),
            app_id=app_id_of(message.headers),
        )

    def next(self, data: Payload) -> tuple[list[DataItem], int]:
        message, payloads = decode_frame(data)
        return input_items(message, DataStatus.CONTINUE, payloads), message.sync_id
