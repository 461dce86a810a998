"""One session bridge for every streaming front: a session's life between a stream of client
messages and a stream of replies.

A streaming front (the native gRPC stream, the ASE WebSocket, each sequence of an OIP stream)
keeps only its protocol: how a client message becomes a frame, how an output and an error are
encoded (a ``StreamCodec``). The bridge does the rest, the same way for all of them, as
starlette wraps HTTP and WebSocket handlers in one exception path:

- the first message opens the session (admission, the worker, the licence: ``Engine.open``) on
  the service the front routed it to, or the one it names (``Decoded.service``, routed by
  ``aiges.server.services``: the native stream's ``LoaderInput.serviceId``);
- later messages are written as they come, in a pump beside the replies; the message the codec
  calls the last one, or the end of the client's messages where that means "no more input"
  (a gRPC half-close), tells the wrapper that no more input comes, and its remaining output is
  still delivered; the end of the messages where it means the client left (a WebSocket closed)
  ends the session at once;
- every output batch is encoded and handed on as soon as it exists;
- an ``AigesError`` anywhere (a bad message, a refusal, the wrapper, a lost worker) is encoded
  as the front's error reply, logged and counted once through ``FrontCalls``, and ends the session;
- whatever way the stream ends (the output ended, an error, the client cancelled or went away),
  the session is closed: destroyed in its worker, its licence back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aiges.engine.context import RequestContext
from aiges.engine.engine import Engine
from aiges.engine.messages import Frame, Output
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.server.observe import FrontCalls
from aiges.server.service import Service
from aiges.server.services import Services

In = TypeVar("In", contravariant=True)
Reply = TypeVar("Reply", covariant=True)
Message = TypeVar("Message")
Out = TypeVar("Out")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A client message as a frame, and whether it is the last of the session's input."""

    frame: Frame
    last: bool = False
    service: str = ""
    """The service a first message names (the native stream's ``LoaderInput.serviceId``)."""


class StreamCodec(Protocol[In, Reply]):
    """A streaming front's own protocol."""

    half_close_finishes: bool
    """True: the end of the client's messages means "no more input" (its output still comes);
    False: it means the client is gone (the session ends at once)."""

    def first(self, message: In) -> Decoded:
        """The message that opens the session (raises AigesError for a bad one)."""

    def next(self, message: In) -> Decoded:
        """A later message (raises AigesError for a bad one)."""

    def output(self, session: Session, output: Output) -> Reply: ...

    def error(self, session: Session | None, error: AigesError) -> Reply: ...


class SessionBridge:
    """The bridge of one front (its op name in metrics and logs)."""

    def __init__(self, services: Services, calls: FrontCalls, op: str) -> None:
        self.services = services
        self.calls = calls
        self.op = op

    async def stream(
        self,
        make_context: Callable[[], RequestContext],
        codec: StreamCodec[Message, Out],
        inbound: AsyncIterator[Message],
        *,
        ordered: bool = False,
        target: Service | None = None,
    ) -> AsyncGenerator[Out, None]:
        """The replies of one session fed by ``inbound``; use it with ``contextlib.aclosing`` so
        that a consumer that stops early (its client gone) closes the session at once.
        ``make_context`` builds the session's context (a bad deadline or priority is an error
        reply like any other); ``target``: the service the front routed the session to (None: the
        one its first message names)."""
        started = time.perf_counter()
        code = 0
        session: Session | None = None
        engine: Engine | None = None
        pump: asyncio.Task[bool] | None = None
        tag = ""
        service = target.label if target is not None else ""
        try:
            context = make_context()
            tag = context.tag
            first = await anext(inbound, None)
            if first is None:
                return
            decoded = codec.first(first)
            if target is None:
                target = self.services.route(decoded.service, context.caller)
                service = target.label
            engine, session = await target.open(context, decoded.frame, ordered=ordered)
            if decoded.last:
                engine.finish(session)
            else:
                pump = asyncio.create_task(self._pump(engine, session, codec, inbound))
            while not session.closed:
                output = await engine.read(session, None)
                if output is not None:
                    yield codec.output(session, output)
        except AigesError as exc:
            if pump is not None and pump.done() and not pump.cancelled() and pump.result():
                return  # the client left: nobody to tell
            code = exc.code
            self.calls.failed(self.op, tag, exc, service=service)
            yield codec.error(session, exc)
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if session is not None and engine is not None:
                engine.close(session, reason="stream ended")
            self.calls.done(self.op, code, started, service)

    @staticmethod
    async def _pump(
        engine: Engine, session: Session, codec: StreamCodec[Message, Out], inbound: AsyncIterator[Message]
    ) -> bool:
        """Client messages -> writes, then the end of the input; True if the client left."""
        try:
            async for message in inbound:
                decoded = codec.next(message)
                await engine.write(session, decoded.frame)
                if decoded.last:
                    break
            else:
                if not codec.half_close_finishes:
                    engine.close(session, reason="client gone")
                    return True
        except AigesError as exc:
            engine.fail(session, exc)
            return False
        engine.finish(session)
        return False
