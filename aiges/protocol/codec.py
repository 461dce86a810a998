"""LoaderInput / LoaderOutput (protocol v2) <-> engine types. Runs in the worker processes.

Decoding and encoding happen where the wrapper runs, not in the server process: the server only
routes raw frames, so it stays lean however large the payloads, and the codec work spreads over
the workers. A reply leaves the worker already encoded in the form its front sends on:

    envelope "xsf"     a ``utils.ResData``: complete for a one-shot call; for a session's
                       outputs only its ``data`` field, which the front sends after its own
                       ResData fields - protobuf merges concatenated messages, so that is one
                       ResData
    envelope "stream"  a bare LoaderOutput, for ``aiges.v1.Session/Stream``

Outputs are matched against the request's ``expect`` list by name (10106 when a wrapper output is
not expected): each payload takes its name and data type from the matching entry, its attributes
are the wrapper's ``desc`` overlaid with the entry's attributes, plus ``seq`` and ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from aiges.engine.types import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.envelope_pb2 import XsfReply
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc
from aiges.protocol.xsf_pb2 import DataMeta, ResData

XSF = "xsf"
STREAM = "stream"


def decode_input(raw: bytes) -> LoaderInput:
    try:
        return LoaderInput.FromString(raw)
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"data[0].data is not a protocol.LoaderInput: {exc}") from None


def input_params(message: LoaderInput, header_pass: Iterable[str]) -> dict[str, str]:
    """The wrapper's params: the capability params plus the header-pass headers (``sid``...)."""
    params = dict(message.params)
    headers = message.headers
    for name in header_pass:
        if name in headers and name not in params:
            params[name] = headers[name]
    return params


def input_items(message: LoaderInput, default_status: int) -> list[DataItem]:
    items = []
    for payload in message.pl:
        meta = payload.meta
        attributes = dict(meta.attribute)
        status = attributes.get("status")
        items.append(DataItem(meta.name, payload.data, meta.dataType, _status(status, default_status), attributes))
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


def new_output(envelope: str, head: tuple[str, str, str] | None = None) -> tuple[object, LoaderOutput]:
    """An empty LoaderOutput to fill, and the message to serialize. For "xsf" the LoaderOutput
    sits inside an XsfReply, which encodes exactly like a utils.ResData; with ``head`` (handle,
    trace, peer address) it is the whole reply, without it the front puts its own fields first."""
    if envelope == XSF:
        root = XsfReply()
        if head is not None:
            handle, trace, peer = head
            root.s.h = handle
            root.s.t = trace
            root.s.sess["PeerAddr"] = peer
        return root, root.data.add().data
    output = LoaderOutput()
    return output, output


def error_output(service_id: str, error: AigesError) -> LoaderOutput:
    return LoaderOutput(serviceId=service_id, code=error.code, err=error.message, status=LoaderOutput.END)


def status_output(service_id: str, status: int) -> LoaderOutput:
    return LoaderOutput(serviceId=service_id, code=0, status=status)


@dataclass
class OutputContext:
    """What encoding a call's or a session's outputs needs: the first frame's serviceId and
    expect list, the envelope, and a running sequence number per output."""

    service_id: str
    expect: dict[str, MetaDesc]
    envelope: str
    head: tuple[str, str, str] | None = None
    seq: dict[str, int] = field(default_factory=dict)

    def fill(self, output: LoaderOutput, items: Iterable[DataItem], numbered: bool) -> None:
        """Add a payload to ``output`` per item (10106 for an item no expect entry names)."""
        expect = self.expect
        for item in items:
            entry = expect.get(item.key)
            if entry is None:
                names = ", ".join(sorted(expect)) or "none"
                raise AigesError(
                    ErrorCode.INVALID_OUTPUT,
                    f"wrapper output {item.key!r} is not in the request's expect list (expected: {names})",
                )
            if numbered:
                number = self.seq[item.key] = self.seq.get(item.key, 0) + 1
            else:
                number = 0
            payload = output.pl.add(data=item.data)
            meta = payload.meta
            meta.name = entry.name
            meta.dataType = entry.dataType
            attributes = meta.attribute
            if item.desc:
                attributes.update(item.desc)
            attributes.update(entry.attribute)
            attributes["seq"] = str(number)
            attributes["status"] = str(item.status)

    def once(self, items: list[DataItem]) -> bytes:
        """A one-shot reply; for "xsf" with the context's head, the whole ResData."""
        root, output = new_output(self.envelope, self.head)
        output.serviceId = self.service_id
        output.status = LoaderOutput.ONCE
        self.fill(output, items, False)
        return root.SerializeToString()

    def batch(self, items: list[DataItem]) -> tuple[bytes, bool]:
        """One output batch of a session, and whether it ends the output. Its status is the
        status of its last item (ONCE counts as END in a session)."""
        status = items[-1].status if items else DataStatus.CONTINUE
        ended = status in (DataStatus.END, DataStatus.ONCE)
        root, output = new_output(self.envelope)
        output.serviceId = self.service_id
        output.status = DataStatus.END if ended else status
        self.fill(output, items, True)
        return root.SerializeToString(), ended

    def error(self, error: AigesError) -> bytes:
        return wrap(error_output(self.service_id, error), self.envelope)


@dataclass
class Frame:
    """A decoded LoaderInput: what the wrapper gets, and where it sits in its stream."""

    once: bool
    params: dict[str, str]
    items: list[DataItem]
    sync_id: int
    context: OutputContext
    app_id: str = ""


class V2Codec:
    def __init__(self, header_pass: Iterable[str]) -> None:
        self.header_pass = tuple(header_pass)

    def first(self, raw: bytes, envelope: str, head: tuple[str, str, str] | None = None) -> Frame:
        """The first frame of a call or a session: it carries the params, headers and expect."""
        message = decode_input(raw)
        once = message.state == LoaderInput.ONCE
        context = OutputContext(message.serviceId, {e.name: e for e in message.expect}, envelope, head)
        return Frame(
            once=once,
            params=input_params(message, self.header_pass),
            items=input_items(message, DataStatus.ONCE if once else DataStatus.CONTINUE),
            sync_id=message.sync_id,
            context=context,
            app_id=message.headers.get("app_id") or message.headers.get("appid", ""),
        )

    def next(self, raw: bytes) -> tuple[list[DataItem], int]:
        """A later frame of a session: its items and its sync_id."""
        message = decode_input(raw)
        return input_items(message, DataStatus.CONTINUE), message.sync_id
