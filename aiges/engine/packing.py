"""Messages packed as plain tuples for the IPC frames, and unpacked on arrival.

Pickling an instance of a class costs about ten times what pickling a tuple of the same fields
does (the pickler goes through ``__reduce_ex__`` for every instance, the unpickler through the
class's Python ``__new__``): some 15 us more per call on the hot path, as much as the rest of the
IPC. So the messages every call sends (``Once``, ``Open``, ``Write``, their answers, session
output) travel as tuples whose first element says which message they are; this module is the one
place that knows their layout. Rare messages (``Init``, ``Ready``, reports...) pickle as they are.
"""

from __future__ import annotations

from typing import Any

from aiges.engine.items import DataItem
from aiges.engine.messages import (
    CallContext,
    Done,
    Expect,
    Failed,
    Items,
    ItemsOutput,
    Once,
    OnceReply,
    Open,
    Opened,
    SessionOutput,
    Timings,
    Wire,
    Write,
)

ONCE, OPEN, WRITE, DONE_ONCE, DONE, DONE_OPENED, FAILED, OUTPUT = range(1, 9)
WIRE, ITEMS = 0, 1
_new = tuple.__new__
"""Builds a NamedTuple from its fields in C, without the class's Python ``__new__`` (a third of
the cost of unpacking)."""


def _frame(frame: Wire | Items) -> tuple[Any, ...]:
    if type(frame) is Wire:
        return (WIRE, frame.codec, frame.data)
    assert isinstance(frame, Items)
    items = [(i.key, i.data, i.type, i.status, i.desc) for i in frame.items]
    expect = {name: (e.data_type, e.attributes) for name, e in frame.expect.items()}
    return (ITEMS, items, frame.params, frame.headers, expect, frame.service_id, frame.sync_id)


def _unframe(packed: tuple[Any, ...]) -> Wire | Items:
    if packed[0] == WIRE:
        return _new(Wire, packed[1:])
    _, items, params, headers, expect, service_id, sync_id = packed
    return Items(
        [DataItem(*i) for i in items],
        params,
        headers,
        {name: Expect(*e) for name, e in expect.items()},
        service_id,
        sync_id,
    )


def _output(output: Any) -> Any:
    if type(output) is ItemsOutput:
        return (output.status, [(i.key, i.data, i.type, i.status, i.desc) for i in output.items])
    return output  # encoded bytes (or their out-of-band buffer)


def _unoutput(packed: Any) -> Any:
    if type(packed) is tuple:
        return ItemsOutput(packed[0], [DataItem(*i) for i in packed[1]])
    return packed


def pack(message: Any) -> Any:
    """A message as it is pickled: a plain tuple for the messages of every call."""
    kind = type(message)
    if kind is Once:
        return (ONCE, message.call_id, tuple(message.context), _frame(message.frame))
    if kind is Write:
        return (WRITE, message.call_id, message.tag, _frame(message.frame))
    if kind is Done:
        value = message.value
        if value is None:
            return (DONE, message.call_id, *message.timings)
        if type(value) is OnceReply:
            return (DONE_ONCE, message.call_id, _output(value.output), *message.timings)
        return (
            DONE_OPENED,
            message.call_id,
            value.service_id,
            [(_output(o), e) for o, e in value.outputs],
            *message.timings,
        )
    if kind is SessionOutput:
        return (OUTPUT, message.tag, _output(message.output), message.ended)
    if kind is Failed:
        return (FAILED, message.call_id, message.code, message.message, *message.timings)
    if kind is Open:
        return (OPEN, message.call_id, tuple(message.context), _frame(message.frame), message.ordered)
    return message


def unpack(packed: Any) -> Any:
    """The message a pickled frame held."""
    if type(packed) is not tuple or not packed or type(packed[0]) is not int:
        return packed  # a message that pickles as itself (or any other value the channel carries)
    kind = packed[0]
    if kind == DONE_ONCE:
        _, call_id, output, *timings = packed
        return _new(Done, (call_id, _new(OnceReply, (_unoutput(output),)), _new(Timings, timings)))
    if kind == ONCE:
        _, call_id, context, frame = packed
        return _new(Once, (call_id, _new(CallContext, context), _unframe(frame)))
    if kind == WRITE:
        return _new(Write, (packed[1], packed[2], _unframe(packed[3])))
    if kind == DONE:
        return _new(Done, (packed[1], None, _new(Timings, packed[2:])))
    if kind == OUTPUT:
        return _new(SessionOutput, (packed[1], _unoutput(packed[2]), packed[3]))
    if kind == FAILED:
        _, call_id, code, text, *timings = packed
        return Failed(call_id, code, text, Timings(*timings))
    if kind == DONE_OPENED:
        _, call_id, service_id, outputs, *timings = packed
        return Done(call_id, Opened(service_id, [(_unoutput(o), e) for o, e in outputs]), Timings(*timings))
    if kind == OPEN:
        _, call_id, context, frame, ordered = packed
        return Open(call_id, _new(CallContext, context), _unframe(frame), ordered)
    raise ValueError(f"unknown packed message {kind!r}")
