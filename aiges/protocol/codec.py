"""LoaderInput / LoaderOutput (protocol v2) <-> engine types.

Outputs are matched against the request's ``expect`` list by name (10106 when a wrapper output is
not expected): each payload takes its name and data type from the matching entry, its attributes
are the wrapper's ``desc`` overlaid with the entry's attributes, plus ``seq`` and ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.message import DecodeError

from aiges.engine.types import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload

ONCE = LoaderInput.ONCE
STREAM = LoaderInput.STREAM


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
        items.append(
            DataItem(
                key=meta.name,
                data=payload.data,
                type=meta.dataType,
                status=_status(attributes.get("status"), default_status),
                desc=attributes,
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


def expect_index(message: LoaderInput) -> dict[str, MetaDesc]:
    return {entry.name: entry for entry in message.expect}


def output_payloads(
    items: Iterable[DataItem], expect: Mapping[str, MetaDesc], seq: Mapping[str, int] | None = None
) -> list[Payload]:
    """Payloads for ``items``; ``seq`` gives each output's sequence number (one-shot: all 0)."""
    payloads = []
    for item in items:
        entry = expect.get(item.key)
        if entry is None:
            names = ", ".join(sorted(expect)) or "none"
            raise AigesError(
                ErrorCode.INVALID_OUTPUT,
                f"wrapper output {item.key!r} is not in the request's expect list (expected: {names})",
            )
        attributes = dict(item.desc)
        attributes.update(entry.attribute)
        attributes["seq"] = str(seq.get(item.key, 0) if seq else 0)
        attributes["status"] = str(item.status)
        payloads.append(
            Payload(meta=MetaDesc(name=entry.name, dataType=entry.dataType, attribute=attributes), data=item.data)
        )
    return payloads


def once_output(service_id: str, items: list[DataItem], expect: Mapping[str, MetaDesc]) -> LoaderOutput:
    return LoaderOutput(
        serviceId=service_id, code=0, status=LoaderOutput.ONCE, pl=output_payloads(items, expect)
    )


def stream_output(
    service_id: str, items: list[DataItem], expect: Mapping[str, MetaDesc], seq: Mapping[str, int]
) -> LoaderOutput:
    """One batch of a session; its status is the status of its last item."""
    status = items[-1].status if items else DataStatus.CONTINUE
    if status == DataStatus.ONCE:
        status = DataStatus.END
    return LoaderOutput(serviceId=service_id, code=0, status=status, pl=output_payloads(items, expect, seq))


def error_output(service_id: str, error: AigesError) -> LoaderOutput:
    return LoaderOutput(serviceId=service_id, code=error.code, err=error.message, status=LoaderOutput.END)
