"""The native streaming front: ``aiges.v1.Session/Stream``, one bidi gRPC stream per session.

The first LoaderInput opens the session (its params, headers and expect hold for the session; its
payloads are written), later messages are written in arrival order, and every output batch is
pushed as soon as the wrapper produces it. The stream ends after a batch with status END or an
error output; when the client half-closes, the wrapper is told no more input comes and its
remaining output is still delivered. A client that cancels or disconnects ends the session,
which destroys it in the worker and frees its licence. The session's handle is sent in the
initial metadata as ``aiges-handle``. Messages pass through raw (``Wire("stream", ...)``), as on
the xsf front.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from aiges.engine.context import RequestContext
from aiges.engine.engine import Engine
from aiges.engine.messages import Wire
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.loader_codec import STREAM, error_output, wrap
from aiges.server.observe import FrontCalls

SERVICE = "aiges.v1.Session"


class StreamService:
    def __init__(self, engine: Engine, handles: HandleGenerator) -> None:
        self.engine = engine
        self.handles = handles
        self.calls = FrontCalls("stream")

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler = grpc.stream_stream_rpc_method_handler(self.stream)
        return grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler})

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        handle = self.handles.next()
        await context.send_initial_metadata((("aiges-handle", handle),))
        started = time.perf_counter()
        session: Session | None = None
        pump: asyncio.Task[None] | None = None
        code = 0
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                return
            session = await self.engine.open(RequestContext(handle), Wire(STREAM, first))
            pump = asyncio.create_task(self._pump(requests, session))
            while True:
                output = await self.engine.read(session, None)
                assert isinstance(output, bytes)
                yield output
                if session.closed:
                    return
        except AigesError as exc:
            code = exc.code
            self.calls.failed("Stream", handle, exc)
            yield wrap(error_output(session.service_id if session is not None else "", exc), STREAM)
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if session is not None:
                self.engine.close(session, reason="stream ended")
            self.calls.done("Stream", code, started)

    async def _pump(self, requests: AsyncIterator[bytes], session: Session) -> None:
        """Client messages -> writes; the end of the client's stream -> finish."""
        try:
            async for raw in requests:
                await self.engine.write(session, Wire(STREAM, raw))
        except AigesError as exc:
            self.engine.fail(session, exc)
            return
        self.engine.finish(session)
