"""The hot messages packed as plain tuples for the IPC frames, and unpacked on arrival, with the
layout derived from each class's fields.

Pickling an instance of a class costs about ten times what pickling a tuple of the same fields
does (the pickler goes through ``__reduce_ex__`` for every instance, the unpickler through the
class's Python ``__new__``): some 15 us more per call on the hot path, as much as the rest of the
IPC. So the messages every call sends (those ``aiges.engine.messages`` marks ``@hot(code)``)
travel as tuples ``(code, *fields)``. Each field is packed after its declared type:

- a plain value (``int``, ``str``, ``float``, ``bool``, a ``dict``/``list``/``tuple`` of them) as it is;
- a ``Payload`` marked to travel out of band when large (``OUT_OF_BAND_MIN``);
- an ``Output``: encoded bytes out of band, ``Spliced`` pieces as one out-of-band buffer
  (``Gather``), an ``ItemsOutput`` packed;
- a hot message, or a union of them, packed in turn (its code tells which on arrival);
- any other NamedTuple or dataclass as the tuple of its fields, each packed after its type;
- ``list[T]``, ``dict[str, T]``, ``tuple[A, B]`` element by element.

The pack and unpack function of each class is generated from its fields once, at import (as
``dataclasses`` generates ``__init__``), so it runs as fast as the hand-written tuples it
replaced. Rare messages (``Init``, ``Ready``, reports...) pickle as they are.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Callable
from pickle import PickleBuffer
from typing import Any, get_args, get_origin

from aiges.engine import messages
from aiges.engine.messages import HOT, ItemsOutput, Output, Payload, Spliced

OUT_OF_BAND_MIN = 4096
"""Payloads from this size travel beside the pickled message, not inside it."""

_new = tuple.__new__
"""Builds a NamedTuple from its fields in C, without the class's Python ``__new__`` (a third of
the cost of unpacking)."""


class Gather(bytearray):
    """What a ``Spliced`` output is pickled as: an empty out-of-band buffer that carries the
    pieces, which ``aiges.engine.ipc`` writes in its place, one after the other (the receiver
    gets one buffer of their bytes)."""

    __slots__ = ("pieces", "size")

    def __init__(self, spliced: Spliced) -> None:
        super().__init__()
        self.pieces = spliced.pieces
        self.size = spliced.size


def out_of_band(data: Payload) -> Payload:
    """A payload marked to travel beside the pickled message when large; small ones stay in it
    (as bytes: a memoryview does not pickle)."""
    if type(data) is bytes:
        return PickleBuffer(data) if len(data) >= OUT_OF_BAND_MIN else data
    if type(data) is PickleBuffer:
        return data
    view = memoryview(data)
    return PickleBuffer(view) if view.nbytes >= OUT_OF_BAND_MIN else view.tobytes()


def _output(output: Output) -> object:
    if type(output) is bytes:
        return PickleBuffer(output) if len(output) >= OUT_OF_BAND_MIN else output
    if type(output) is Spliced:
        return PickleBuffer(Gather(output))
    if type(output) is ItemsOutput:
        return _PACK[ItemsOutput](output)
    raise TypeError(f"an output cannot be a {type(output).__name__}")


# -- the generator -----------------------------------------------------------------------------------


class _PayloadField:
    """Stands for ``messages.Payload`` while the fields' types are read."""


class _OutputField:
    """Stands for ``messages.Output`` while the fields' types are read."""


_PLAIN = (int, str, float, bool, type(None), bytes)
_PACK: dict[type, Callable[[Any], tuple[object, ...]]] = {}
_UNPACK: dict[int, Callable[[tuple[Any, ...]], Any]] = {}


class _Generator:
    """Writes the source of the pack and unpack functions from the declared field types."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {
            "_new": _new,
            "_oob": out_of_band,
            "_output": _output,
            "_PACK": _PACK,
            "_UNPACK": _UNPACK,
        }
        self.counter = itertools.count()

    def name(self, value: object, prefix: str) -> str:
        name = f"_{prefix}{next(self.counter)}"
        self.names[name] = value
        return name

    def var(self) -> str:
        return f"v{next(self.counter)}"

    def fields(self, cls: type) -> list[tuple[str, object]]:
        local = {"Payload": _PayloadField, "Output": _OutputField}
        hints = typing.get_type_hints(cls, vars(messages), local)
        if dataclasses.is_dataclass(cls):
            return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
        return [(name, hints[name]) for name in typing.cast(Any, cls)._fields]

    def pack(self, hint: object, expr: str) -> str | None:
        """The expression packing ``expr`` of type ``hint``; None when it packs as itself."""
        if hint in _PLAIN:
            return None
        if hint is _PayloadField:  # small bytes as they are without a call: most payloads
            return f"({expr} if type({expr}) is bytes and len({expr}) < {OUT_OF_BAND_MIN} else _oob({expr}))"
        if hint is _OutputField:
            return f"({expr} if type({expr}) is bytes and len({expr}) < {OUT_OF_BAND_MIN} else _output({expr}))"
        if isinstance(hint, type) and hint in HOT:
            return self.packed(hint, expr)
        origin, args = get_origin(hint), get_args(hint)
        if origin in (types.UnionType, typing.Union):
            if not all(a in HOT or a is type(None) for a in args):
                raise TypeError(f"cannot pack a field of type {hint}")
            members = [a for a in args if a is not type(None)]
            packed = self.packed(members[-1], expr)  # the last member needs no check
            for member in reversed(members[:-1]):
                packed = f"({self.packed(member, expr)} if type({expr}) is {self.name(member, 'T')} else {packed})"
            return f"(None if {expr} is None else {packed})" if len(members) < len(args) else packed
        if origin is list:
            e = self.var()
            inner = self.pack(args[0], e)
            return None if inner is None else f"[{inner} for {e} in {expr}]"
        if origin is dict:
            k, v = self.var(), self.var()
            inner = self.pack(args[1], v)
            return None if inner is None else f"{{{k}: {inner} for {k}, {v} in {expr}.items()}}"
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                e = self.var()
                inner = self.pack(args[0], e)
                return None if inner is None else f"tuple({inner} for {e} in {expr})"
            parts = [self.pack(a, f"{expr}[{i}]") or f"{expr}[{i}]" for i, a in enumerate(args)]
            return f"({', '.join(parts)},)"
        if isinstance(hint, type) and (issubclass(hint, tuple) or dataclasses.is_dataclass(hint)):
            fields = self.fields(hint)
            parts = [self.pack(h, f"{expr}.{n}") or f"{expr}.{n}" for n, h in fields]
            if issubclass(hint, tuple) and parts == [f"{expr}.{n}" for n, _ in fields]:
                return f"tuple({expr})"
            return f"({', '.join(parts)},)"
        if isinstance(hint, type) and issubclass(hint, (dict, list, frozenset)):
            return None
        raise TypeError(f"cannot pack a field of type {hint}")

    def unpack(self, hint: object, expr: str) -> str | None:
        """The expression unpacking ``expr`` into ``hint``; None when it arrives as itself."""
        if hint in _PLAIN or hint is _PayloadField:
            return None
        if hint is _OutputField:  # encoded bytes as they arrived; an ItemsOutput unpacked
            return f"({expr} if type({expr}) is not tuple else _UNPACK[{expr}[0]]({expr}))"
        if isinstance(hint, type) and hint in HOT:
            return self.unpacked(hint, expr)
        origin, args = get_origin(hint), get_args(hint)
        if origin in (types.UnionType, typing.Union):
            unpacked = f"_UNPACK[{expr}[0]]({expr})"
            for member in reversed([a for a in args if a in HOT and self.flat(a)]):  # the common ones inline
                unpacked = f"({self.unpacked(member, expr)} if {expr}[0] == {HOT[member]} else {unpacked})"
            return f"(None if {expr} is None else {unpacked})" if type(None) in args else unpacked
        if origin is list:
            e = self.var()
            inner = self.unpack(args[0], e)
            return None if inner is None else f"[{inner} for {e} in {expr}]"
        if origin is dict:
            k, v = self.var(), self.var()
            inner = self.unpack(args[1], v)
            return None if inner is None else f"{{{k}: {inner} for {k}, {v} in {expr}.items()}}"
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                e = self.var()
                inner = self.unpack(args[0], e)
                return None if inner is None else f"tuple({inner} for {e} in {expr})"
            parts = [self.unpack(a, f"{expr}[{i}]") or f"{expr}[{i}]" for i, a in enumerate(args)]
            return f"({', '.join(parts)},)"
        if isinstance(hint, type) and (issubclass(hint, tuple) or dataclasses.is_dataclass(hint)):
            cls = self.name(hint, "T")
            fields = self.fields(hint)
            converted = [self.unpack(h, f"{expr}[{i}]") for i, (_, h) in enumerate(fields)]
            plain = all(c is None for c in converted)
            joined = ", ".join(c or f"{expr}[{i}]" for i, c in enumerate(converted))
            if issubclass(hint, tuple):
                return f"_new({cls}, {expr})" if plain else f"_new({cls}, ({joined},))"
            return f"{cls}(*{expr})" if plain else f"{cls}({joined})"
        return None

    def flat(self, cls: type) -> bool:
        """Whether a hot message's fields are all plain values or payloads: it is then packed
        and unpacked inline where it is a field, without a call."""
        return all(h in _PLAIN or h in (_PayloadField, _OutputField) for _, h in self.fields(cls))

    def packed(self, cls: type, expr: str) -> str:
        """The expression packing hot message ``expr`` of class ``cls``."""
        if not self.flat(cls):
            return f"pack_{cls.__name__}({expr})"
        fields = [self.pack(h, f"{expr}[{i}]") or f"{expr}[{i}]" for i, (_, h) in enumerate(self.fields(cls))]
        return f"({HOT[cls]}, {', '.join(fields)},)"

    def unpacked(self, cls: type, expr: str) -> str:
        if not self.flat(cls):
            return f"unpack_{cls.__name__}({expr})"
        converted = [self.unpack(h, f"{expr}[{i + 1}]") for i, (_, h) in enumerate(self.fields(cls))]
        if all(c is None for c in converted):
            return f"_new({self.name(cls, 'T')}, {expr}[1:])"
        parts = ", ".join(c or f"{expr}[{i + 1}]" for i, c in enumerate(converted))
        return f"_new({self.name(cls, 'T')}, ({parts},))"

    def message(self, cls: type, code: int) -> str:
        """The source of ``pack_<cls>`` and ``unpack_<cls>``."""
        fields = self.fields(cls)
        packed = [self.pack(h, f"m[{i}]") or f"m[{i}]" for i, (_, h) in enumerate(fields)]
        unpacked = [self.unpack(h, f"p[{i + 1}]") or f"p[{i + 1}]" for i, (_, h) in enumerate(fields)]
        return (
            f"def pack_{cls.__name__}(m):\n"
            f"    return ({code}, {', '.join(packed)},)\n"
            f"def unpack_{cls.__name__}(p):\n"
            f"    return _new({self.name(cls, 'T')}, ({', '.join(unpacked)},))\n"
        )


def _generate() -> dict[str, str]:
    """Generate every hot message's pack and unpack functions, in one namespace (they call each
    other by name); returns their source, by class."""
    generator = _Generator()
    sources = {}
    for cls, code in HOT.items():
        if not issubclass(cls, tuple):
            raise TypeError(f"hot message {cls.__name__} must be a NamedTuple")
        sources[cls.__name__] = generator.message(cls, code)
    namespace: dict[str, Any] = generator.names
    exec(compile("".join(sources.values()), "<aiges.engine.packing>", "exec"), namespace)  # noqa: S102 - our source
    for cls, code in HOT.items():
        _PACK[cls] = namespace[f"pack_{cls.__name__}"]
        _UNPACK[code] = namespace[f"unpack_{cls.__name__}"]
    return sources


SOURCES = _generate()
"""The generated functions' source, by class name (to read how a message is laid out)."""


def pack(message: object) -> object:
    """A message as it is pickled: a plain tuple for a hot message, itself otherwise."""
    packer = _PACK.get(type(message))
    return message if packer is None else packer(message)


def unpack(packed: object) -> object:
    """The message a pickled frame held."""
    if type(packed) is not tuple or not packed or type(packed[0]) is not int:
        return packed  # a message that pickles as itself (or any other value the channel carries)
    unpacker = _UNPACK.get(packed[0])
    if unpacker is None:
        raise ValueError(f"unknown packed message {packed[0]!r}")
    return unpacker(packed)
