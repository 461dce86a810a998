"""The codecs a worker decodes calls with and encodes their outputs with, by name.

Each front owns one: the xsf front's (``"xsf"``: LoaderInput in, ``utils.ResData`` out), the
native stream's (``"stream"``: LoaderInput in, bare LoaderOutput out), and ``"items"`` for the
fronts that decode their requests themselves (OIP, the ASE JSON API): engine items in,
``ItemsOutput`` out. The xsf and stream codecs are ``aiges.protocol.loader_codec``; a new
protocol is a front plus, if it wants its replies encoded in the worker, a codec here.

Outputs are matched against the call's ``expect`` entries by name (10106 for an output no entry
names): each takes its name and data type from the entry, and its attributes are the wrapper's
``desc`` overlaid with the entry's attributes, plus ``seq`` (per output name, counting from 1 in a
session, 0 in a one-shot reply) and ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiges.engine.items import DataItem, DataStatus
from aiges.engine.messages import CallContext, Expect, Items, ItemsOutput, Output
from aiges.engine.shm import copy_out
from aiges.errors import AigesError, ErrorCode

ITEMS = "items"


def input_params(params: Mapping[str, str], headers: Mapping[str, str], header_pass: Iterable[str]) -> dict[str, str]:
    """The wrapper's params: the capability params plus the header-pass headers (``sid``...)."""
    merged = dict(params)
    for name in header_pass:
        if name in headers and name not in merged:
            merged[name] = headers[name]
    return merged


def app_id_of(headers: Mapping[str, str]) -> str:
    return headers.get("app_id") or headers.get("appid", "")


class OutputNaming:
    """Names a call's or a session's outputs after its expect entries, numbering them."""

    __slots__ = ("expect", "seq")

    def __init__(self, expect: Mapping[str, Expect]) -> None:
        self.expect = expect
        self.seq: dict[str, int] = {}

    def entry(self, key: str) -> Expect:
        """The expect entry an output is named by (10106 for an output no entry names)."""
        entry = self.expect.get(key)
        if entry is None:
            names = ", ".join(sorted(self.expect)) or "none"
            raise AigesError(
                ErrorCode.INVALID_OUTPUT,
                f"wrapper output {key!r} is not in the request's expect list (expected: {names})",
            )
        return entry

    def number(self, key: str) -> int:
        """The next ``seq`` of a session's output ``key`` (1, 2, ...)."""
        number = self.seq[key] = self.seq.get(key, 0) + 1
        return number

    def attributes(self, item: DataItem, entry: Expect, number: int) -> dict[str, str]:
        """The wrapper's ``desc``, overlaid with the entry's attributes, plus ``seq`` and ``status``."""
        attributes = dict(item.desc) if item.desc else {}
        if entry.attributes:
            attributes.update(entry.attributes)
        attributes["seq"] = str(number)
        attributes["status"] = str(item.status)
        return attributes


def batch_status(items: list[DataItem]) -> tuple[int, bool]:
    """A session batch's status, the status of its last item, and whether it ends the output
    (ONCE counts as END in a session)."""
    status = items[-1].status if items else DataStatus.CONTINUE
    ended = status in (DataStatus.END, DataStatus.ONCE)
    return (DataStatus.END if ended else status), ended


class Encoder(Protocol):
    """Encodes one call's or one session's outputs in its front's form."""

    service_id: str

    def once(self, items: list[DataItem]) -> Output: ...

    def batch(self, items: list[DataItem]) -> tuple[Output, bool]: ...


@dataclass(slots=True)
class Decoded:
    """A decoded first frame: what the wrapper gets, where it sits in its stream, and how its
    outputs are to be encoded. ``once``: the frame asks for a one-shot call (an xsf AIIn can be
    either; the frame says)."""

    once: bool
    params: dict[str, str]
    items: list[DataItem]
    sync_id: int
    encoder: Encoder
    app_id: str = ""


class Codec(Protocol):
    """``data``: a ``Wire`` frame's bytes for a wire codec, the ``Items`` for the items codec."""

    def first(self, data: Any, head: CallContext) -> Decoded: ...

    def next(self, data: Any) -> tuple[list[DataItem], int]:
        """A session's later frame: its items and its sync_id."""


@dataclass
class ItemsEncoder:
    service_id: str
    naming: OutputNaming

    def once(self, items: list[DataItem]) -> ItemsOutput:
        return ItemsOutput(DataStatus.ONCE, self._items(items, numbered=False))

    def batch(self, items: list[DataItem]) -> tuple[ItemsOutput, bool]:
        status, ended = batch_status(items)
        return ItemsOutput(status, self._items(items, numbered=True)), ended

    def _items(self, items: list[DataItem], numbered: bool) -> list[DataItem]:
        naming = self.naming
        named = []
        for item in items:
            entry = naming.entry(item.key)
            attributes = naming.attributes(item, entry, naming.number(item.key) if numbered else 0)
            named.append(DataItem(item.key, item.data, entry.data_type, item.status, attributes))
        return named


class ItemsCodec:
    """For calls their front decoded: nothing to decode, outputs as ``ItemsOutput``."""

    def __init__(self, header_pass: Iterable[str]) -> None:
        self.header_pass = tuple(header_pass)

    def first(self, frame: Items, head: CallContext) -> Decoded:
        return Decoded(
            once=True,
            params=input_params(frame.params, frame.headers, self.header_pass),
            items=owned(frame.items),
            sync_id=frame.sync_id,
            encoder=ItemsEncoder(frame.service_id, OutputNaming(frame.expect)),
            app_id=app_id_of(frame.headers),
        )

    def next(self, frame: Items) -> tuple[list[DataItem], int]:
        return owned(frame.items), frame.sync_id


def owned(items: list[DataItem]) -> list[DataItem]:
    """Items whose data may be kept: a payload that came through the shared-memory ring is a
    view of it until the call is answered, one in a memfd a view of its mapping, so they are
    copied out (``shm.copy_out``: from a memfd with ``pread``, without mapping its pages in)."""
    return [
        item if type(item.data) is bytes else DataItem(item.key, copy_out(item.data), item.type, item.status, item.desc)
        for item in items
    ]


def codecs(header_pass: Iterable[str]) -> dict[str, Codec]:
    """Every codec, by the name a ``Wire`` frame gives (and "items" for ``Items`` frames)."""
    from aiges.protocol.loader_codec import STREAM, XSF, LoaderCodec

    return {
        XSF: LoaderCodec(XSF, header_pass),
        STREAM: LoaderCodec(STREAM, header_pass),
        ITEMS: ItemsCodec(header_pass),
    }
