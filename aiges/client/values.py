"""Client-side values and their LoaderInput / LoaderOutput forms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, cast

from aiges.engine.items import TYPE_CODES as TYPE_CODES  # re-exported: the CLI and xtest name data types by it
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload


class AigesCallError(Exception):
    """The server answered with a non-zero AIGes code."""

    def __init__(self, code: int, message: str, handle: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.handle = handle


@dataclass
class Input:
    data: bytes
    type: int = 0
    attributes: dict[str, str] = field(default_factory=dict)


InputValue = Union[bytes, str, Input]


@dataclass
class Item:
    name: str
    data: bytes
    type: int
    attributes: dict[str, str]

    @property
    def status(self) -> int:
        return int(self.attributes.get("status", "3"))

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class Result:
    """One LoaderOutput: a one-shot result or one batch of a session."""

    code: int
    message: str
    status: int
    items: list[Item]
    handle: str = ""

    def __getitem__(self, name: str) -> bytes:
        for item in self.items:
            if item.name == name:
                return item.data
        raise KeyError(name)

    @property
    def ended(self) -> bool:
        return self.status in (LoaderOutput.END, LoaderOutput.ONCE) or self.code != 0


def as_type(value: int | str) -> int:
    return TYPE_CODES[value] if isinstance(value, str) else int(value)


def payloads(inputs: Mapping[str, InputValue], status: int | None = None, seq: int | None = None) -> list[Payload]:
    result = []
    for name, value in inputs.items():
        if isinstance(value, Input):
            data, data_type, attributes = value.data, value.type, dict(value.attributes)
        else:
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            data_type, attributes = 0, {}
        if status is not None:
            attributes.setdefault("status", str(status))
        if seq is not None:
            attributes.setdefault("seq", str(seq))
        result.append(Payload(meta=MetaDesc(name=name, dataType=cast(Any, data_type), attribute=attributes), data=data))
    return result


def expect_list(expect: Iterable[str] | Mapping[str, int | str] | None) -> list[MetaDesc]:
    if not expect:
        return []
    if isinstance(expect, Mapping):
        return [MetaDesc(name=name, dataType=cast(Any, as_type(t))) for name, t in expect.items()]
    return [MetaDesc(name=name) for name in expect]


def loader_input(
    *,
    state: int,
    inputs: Mapping[str, InputValue] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    expect: Iterable[str] | Mapping[str, int | str] | None = None,
    service_id: str = "",
    sync_id: int = 0,
    status: int | None = None,
) -> LoaderInput:
    return LoaderInput(
        serviceId=service_id,
        state=cast(Any, state),
        headers=dict(headers or {}),
        params={k: str(v) for k, v in (params or {}).items()},
        expect=expect_list(expect),
        pl=payloads(inputs or {}, status=status, seq=sync_id if status is not None else None),
        sync_id=sync_id,
    )


def result_of(output: LoaderOutput, handle: str = "") -> Result:
    return Result(
        code=output.code,
        message=output.err,
        status=output.status,
        items=[Item(p.meta.name, p.data, p.meta.dataType, dict(p.meta.attribute)) for p in output.pl],
        handle=handle,
    )
