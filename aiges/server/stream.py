"""The native streaming front: ``aiges.v1.Session/Stream``, one bidi gRPC stream per session.

The first LoaderInput opens the session (its params, headers and expect hold for the session; its
payloads are written), later messages are written in arrival order, and every output batch is
pushed as soon as the wrapper produces it. The stream ends after a batch with status END or an
error output; when the client half-closes, the wrapper is told no more input comes and its
remaining output is still delivered. A client that cancels or disconnects ends the session,
which destroys it in the worker and frees its licence. The session's handle is sent in the
initial metadata as ``aiges-handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import structlog
from google.protobuf.message import DecodeError

from aiges.engine.engine import Engine
from aiges.engine.sessions import Session, ends_output
from aiges.engine.types import DataStatus
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import codec
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.v2_pb2 import LoaderInput
from aiges.server.xsf import StreamState

log = structlog.get_logger("aiges.stream")

SERVICE = "aiges.v1.Session"


def decode(raw: bytes) -> LoaderInput:
    try:
        return LoaderInput.FromString(raw)
    except DecodeError as exc:
        raise AigesError(ErrorCode.PB_UNMARSHAL, f"stream message is not a protocol.LoaderInput: {exc}") from None


class StreamService:
    def __init__(self, engine: Engine, handles: HandleGenerator, header_pass: tuple[str, ...]) -> None:
        self.engine = engine
        self.handles = handles
        self.header_pass = header_pass

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler = grpc.stream_stream_rpc_method_handler(self.stream)
        return grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler})

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        handle = self.handles.next()
        await context.send_initial_metadata((("aiges-handle", handle),))
        service_id = ""
        session: Session | None = None
        pump: asyncio.Task | None = None
        try:
            first_raw = await anext(aiter(requests), None)
            if first_raw is None:
                return
            first = decode(first_raw)
            service_id = first.serviceId
            state = StreamState(service_id, codec.expect_index(first))
            session = await self.engine.open(handle, codec.input_params(first, self.header_pass), front=state)
            await self.engine.write(session, codec.input_items(first, DataStatus.CONTINUE))
            pump = asyncio.create_task(self._pump(requests, session))
            while True:
                batch = await self.engine.read(session, None)
                if batch:
                    yield state.encode(batch).SerializeToString()
                if ends_output(batch):
                    return
        except AigesError as exc:
            log.warning("stream failed", sid=handle, code=exc.code, error=exc.message)
            yield codec.error_output(service_id, exc).SerializeToString()
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if session is not None:
                self.engine.close(session, reason="stream ended")

    async def _pump(self, requests: AsyncIterator[bytes], session: Session) -> None:
        """Client messages -> writes; the end of the client's stream -> finish."""
        try:
            async for raw in requests:
                await self.engine.write(session, codec.input_items(decode(raw), DataStatus.CONTINUE))
        except AigesError as exc:
            self.engine.fail(session, exc)
            return
        self.engine.finish(session)
