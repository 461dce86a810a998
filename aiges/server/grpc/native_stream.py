"""The native streaming front: ``aiges.v1.Session/Stream``, one bidi gRPC stream per session.

The first LoaderInput opens the session (its params, headers and expect hold for the session; its
payloads are written), later messages are written in arrival order, and every output batch is
pushed as soon as the wrapper produces it. The stream ends after a batch with status END or an
error output; when the client half-closes, the wrapper is told no more input comes and its
remaining output is still delivered. A client that cancels or disconnects ends the session,
which destroys it in the worker and frees its licence. The session's handle is sent in the
initial metadata as ``aiges-handle``. Messages pass through raw (``Wire("stream", ...)``), as on
the xsf front. The first message's ``serviceId`` routes the session (``aiges.server.services``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial

import grpc

from aiges.engine.messages import Output, Wire
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.loader_codec import STREAM, error_output, wrap
from aiges.protocol.xsf_request import service_named
from aiges.server.observe import FrontCalls
from aiges.server.request_context import grpc_context
from aiges.server.security.caller import GrpcCallers
from aiges.server.services import Services, service_header
from aiges.server.session_bridge import Decoded, SessionBridge

SERVICE = "aiges.v1.Session"


class LoaderStreamCodec:
    """LoaderInput messages in, LoaderOutput messages out, both as raw bytes (the worker's
    "stream" codec decodes and encodes them)."""

    half_close_finishes = True

    def __init__(self, default_service: str = "") -> None:
        """``default_service``: where a first message that names no service goes (the
        ``aiges-service`` header's)."""
        self.default_service = default_service

    def first(self, message: bytes) -> Decoded:
        return Decoded(Wire(STREAM, message), service=service_named(message) or self.default_service)

    def next(self, message: bytes) -> Decoded:
        return Decoded(Wire(STREAM, message))

    def output(self, session: Session, output: Output) -> bytes:
        assert isinstance(output, bytes)
        return output

    def error(self, session: Session | None, error: AigesError) -> bytes:
        return wrap(error_output(session.service_id if session is not None else "", error), STREAM)


class StreamService:
    def __init__(self, services: Services, handles: HandleGenerator, callers: GrpcCallers | None = None) -> None:
        self.handles = handles
        self.callers = callers if callers is not None else GrpcCallers()
        self.services = services
        self.bridge = SessionBridge(services, FrontCalls("stream"), "Stream")
        self.codec = LoaderStreamCodec()

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler = grpc.stream_stream_rpc_method_handler(self.stream)
        return grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler})

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        handle = self.handles.next()
        await context.send_initial_metadata((("aiges-handle", handle),))
        make_context = partial(grpc_context, handle, context, self.callers)
        header = service_header(context) if self.services.several else ""
        codec = LoaderStreamCodec(header) if header else self.codec
        async with aclosing(self.bridge.stream(make_context, codec, requests)) as replies:
            async for reply in replies:
                yield reply
