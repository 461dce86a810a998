"""Protobuf's wire format, read just far enough to find where a message's large fields lie.

Why this exists: protobuf's Python API copies every bytes field it parses (into its arena while
parsing, then again into the bytes object each accessor returns), so parsing a 48 MiB request
costs two copies of it before anything is done with it, and as many again for the worker's
LoaderInput. For large messages the xsf front and the worker's codec therefore split a message
into its top-level fields themselves (tag, wire type, where the value lies) without reading the
values, leave the large ``bytes`` fields where they are, as memoryview slices of the buffer the
message arrived in, and let protobuf parse the rest (``without``: the small fields, copied into
a message of their own). Small messages are parsed by protobuf whole: its C parser is faster
there than any Python scan (``SCAN_MIN``).

Malformed input raises protobuf's own ``DecodeError``, as parsing it would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from google.protobuf.message import DecodeError

SCAN_MIN = 256 << 10
"""Messages from this size are scanned; smaller ones are parsed by protobuf."""

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class Field(NamedTuple):
    """One field as it lies in a buffer: ``buf[start:end]`` is the whole field (tag included),
    ``buf[value:end]`` its value (after the length, for a length-delimited one)."""

    number: int
    wire_type: int
    start: int
    value: int
    end: int


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def fields(buf: memoryview, start: int = 0, end: int | None = None) -> Iterator[Field]:
    """The fields of the message in ``buf[start:end]``, in order, values unread."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError("field number 0")
        value = pos
        if wire_type == VARINT:
            _, pos = read_varint(buf, pos, end)
        elif wire_type == I64:
            pos += 8
        elif wire_type == I32:
            pos += 4
        elif wire_type == LEN:
            length, value = read_varint(buf, pos, end)
            pos = value + length
        elif wire_type == SGROUP:
            pos = _skip_group(buf, pos, end, number)
        else:
            raise DecodeError(f"unexpected wire type {wire_type}")
        if pos > end:
            raise DecodeError("truncated message")
        yield Field(number, wire_type, field_start, value, pos)


def _skip_group(buf: memoryview, pos: int, end: int, number: int) -> int:
    """Past a (deprecated) group's end tag."""
    while True:
        tag, after = read_varint(buf, pos, end)
        if tag >> 3 == number and tag & 7 == EGROUP:
            return after
        inner = next(fields(buf, pos, end), None)
        if inner is None:
            raise DecodeError("unterminated group")
        pos = inner.end


def last(buf: memoryview, number: int, wire_type: int, start: int = 0, end: int | None = None) -> Field | None:
    """The last occurrence of field ``number`` (which wins for a singular field), checked to be
    of ``wire_type``; None when it is absent."""
    found = None
    for field in fields(buf, start, end):
        if field.number == number:
            if field.wire_type != wire_type:
                raise DecodeError(f"field {number} has wire type {field.wire_type}, not {wire_type}")
            found = field
    return found


def varint_field(buf: memoryview, number: int, default: int = 0) -> int:
    """A singular varint field's value (an enum, an int32)."""
    field = last(buf, number, VARINT)
    return default if field is None else read_varint(buf, field.value, field.end)[0]


def without(buf: memoryview, spans: Iterable[tuple[int, int]]) -> bytes:
    """``buf`` with the byte ranges ``spans`` (in order, not overlapping) cut out."""
    kept = []
    pos = 0
    for start, end in spans:
        kept.append(buf[pos:start])
        pos = end
    kept.append(buf[pos:])
    return b"".join(kept)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_prefix(number: int, length: int) -> bytes:
    """The tag and length that go before a length-delimited field of ``length`` bytes."""
    return tag(number, LEN) + varint(length)
