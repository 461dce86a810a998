"""The xsf front: ``utils.XsfCall/call``, as existing AIGes/AthenaServing clients speak it.

    AIIn  SeqNo=1, state ONCE     one-shot call
    AIIn  SeqNo=1, state STREAM   open a session (its headers, params and expect hold for the whole
                                  session; its payloads are written too)
    AIIn  (no SeqNo)              write a frame (reordered by sync_id); returns output already ready
    AIOut                         the next output batch, waiting at most waitTime ms (default 500)
    AIExcp                        abort the session
    AILBType, AILoad, AIUnLoad    licence count, personalised resources (``runtime_ops``)

The front only routes: it reads the op, handle and params of the ReqData and passes
``data[0].data`` untouched to a worker (``Wire("xsf", ...)``), which decodes it and encodes the
reply: the whole ResData of a one-shot call, or the ``data`` field of a session's output, which
goes out after this front's own ResData fields (protobuf merges concatenated messages). Payloads
are never decoded or re-encoded here.

With several services, a first frame goes to the service its ``LoaderInput.serviceId`` names
(``aiges.server.services``: the only one when there is one, else 10404 for an unknown or empty
name); a session's later calls go to the service holding its handle, and the runtime ops to the
one their LoaderInput names.

Requests arrive as raw bytes (no gRPC-level deserializer), so a malformed message becomes an
AIGes 10401 reply instead of a transport error. Every failure travels inside the LoaderOutput
(``code``, ``err``, status END) with ``ResData.code`` 0, except 10110 (no licence) and 10112
(still starting), which also set ``ResData.code`` so xsf clients retry elsewhere. An error on a
session ends the session.
"""

from __future__ import annotations

import grpc

from aiges.engine.context import Caller
from aiges.engine.engine import Engine
from aiges.engine.messages import Wire
from aiges.engine.sessions import Session
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.loader_codec import XSF, error_output, status_output, wrap
from aiges.protocol.v2_pb2 import LoaderOutput
from aiges.protocol.xsf_pb2 import ResData
from aiges.protocol.xsf_pb2 import Session as XsfSession
from aiges.protocol.xsf_request import XsfRequest, parse_request, service_named
from aiges.protocol.xsf_request import first_frame as read_first_frame
from aiges.server.grpc.forwarding import SessionForwarder
from aiges.server.grpc.runtime_ops import RUNTIME_OPS, run_op
from aiges.server.observe import FrontCalls
from aiges.server.request_context import grpc_context, tighter
from aiges.server.retry_hints import grpc_hints
from aiges.server.security.caller import ADMIN_OPS, CallerSource, GrpcCallers, require_admin
from aiges.server.service import Service
from aiges.server.services import Services, service_header

NO_OP_OPS = frozenset({"AIHotword", "AIDetect"})
OPS = frozenset({"AIIn", "AIOut", "AIExcp"})
SESSION_OPS = OPS
"""The ops of a session's later calls (an AIIn that is not a first frame, AIOut, AIExcp)."""
RETRY_ELSEWHERE = frozenset({ErrorCode.LICENSE_NOT_ENOUGH, ErrorCode.STARTING})
FIRST_FRAME = "1"
DEFAULT_WAIT_MS = 500


def wait_ms(param: dict[str, str]) -> int:
    """``waitTime``: default 500 ms; unparsable means 0, as in the original."""
    text = param.get("waitTime")
    if text is None:
        return DEFAULT_WAIT_MS
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def first_frame(request: XsfRequest) -> bool:
    """An AIIn that starts a one-shot call or a session (SeqNo 1)."""
    return request.op == "AIIn" and request.param.get("SeqNo") == FIRST_FRAME


def empty(service_id: str, status: int) -> bytes:
    return wrap(status_output(service_id, status), XSF)


class Routed:
    """Where a request goes: the service, and for a first frame whether it opens a session."""

    __slots__ = ("service", "session")

    def __init__(self, service: Service, session: bool = False) -> None:
        self.service = service
        self.session = session


class XsfService:
    def __init__(
        self,
        services: Services,
        handles: HandleGenerator,
        peer_addr: str,
        callers: CallerSource | None = None,
        debug: bool = False,
        forwarder: SessionForwarder | None = None,
        front: str = "xsf",
    ) -> None:
        """``callers``: who each call is from (the caller check's table); ``forwarder``: with
        fronts sharing the port, passes a session's call to the front that holds it; ``front``: the
        name in metrics and logs ("xsf-local" on the local socket such calls arrive at)."""
        self.services = services
        self.handles = handles
        self.peer_addr = peer_addr
        self.callers = callers if callers is not None else GrpcCallers()
        self.forwarder = forwarder
        self.calls = FrontCalls(front, debug)

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "utils.XsfCall", {"call": grpc.unary_unary_rpc_method_handler(self.call)}
        )

    async def call(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = parse_request(raw)
        except AigesError as error:  # not even an envelope to answer in: the error is the whole reply
            self.calls.failed("other", "", error)
            return ResData(code=error.code, error_info=error.message).SerializeToString()
        handle = request.handle or self.handles.next()
        if request.op == "ping":
            return self._head(request, handle).SerializeToString()
        caller = self.callers.of(context)
        if request.op in ADMIN_OPS:  # only admin apps, when callers are authenticated
            await require_admin(context, caller, request.op)

        op = request.op if request.op in OPS or request.op in RUNTIME_OPS else "other"
        if self.forwarder is not None and op in SESSION_OPS and not first_frame(request):
            body = self._forward(self.forwarder, raw, request, handle, context, caller)
            return await self.calls.run(op, handle, body, self._wire_error, request, handle, context)
        try:
            routed = self._route(request, handle, caller, context)
        except AigesError as error:
            return await self.calls.run(op, handle, _raise(error), self._wire_error, request, handle, context)
        body = self._dispatch(request, handle, context, caller, routed)
        service = routed.service.label
        return await self.calls.run(op, handle, body, self._wire_error, request, handle, context, service=service)

    def _route(self, request: XsfRequest, handle: str, caller: Caller, context: grpc.aio.ServicerContext) -> Routed:
        """The service a request goes to (raises 10404, 10112, 10136, 10401): the one its
        LoaderInput names, else the one its ``aiges-service`` header names (what a client sets
        for a gateway in front of many services)."""
        if first_frame(request):
            session, name = read_first_frame(request.data)
            return Routed(self.services.route(name or self._header(context), caller), session)
        if request.op in RUNTIME_OPS:
            return Routed(self.services.route(service_named(request.data) or self._header(context), caller))
        return Routed(self.services.session_owner(handle))

    def _header(self, context: grpc.aio.ServicerContext) -> str:
        if not self.services.several:  # one service: every call is its, whatever it names
            return ""
        return service_header(context)

    async def _forward(
        self,
        forwarder: SessionForwarder,
        raw: bytes,
        request: XsfRequest,
        handle: str,
        context: grpc.aio.ServicerContext,
        caller: Caller,
    ) -> bytes:
        """A session's call: here if this front holds it, else passed on to the one that does."""
        socket = forwarder.holder(handle)
        if socket is None:
            return await self._dispatch(request, handle, context, caller, self._route(request, handle, caller, context))
        return await forwarder.forward(socket, raw, caller, context.time_remaining())

    def _wire_error(
        self, error: AigesError, request: XsfRequest, handle: str, context: grpc.aio.ServicerContext
    ) -> bytes:
        hints = grpc_hints(error)
        if hints:
            context.set_trailing_metadata(hints)
        head = self._head(request, handle)
        if error.code in RETRY_ELSEWHERE:
            head.code = error.code
            head.error_info = error.message
        return head.SerializeToString() + wrap(error_output("", error), XSF)

    def _head(self, request: XsfRequest, handle: str) -> ResData:
        """A reply's own ResData fields (the worker's encoder puts the same ones in a one-shot reply)."""
        return ResData(s=XsfSession(h=handle, t=request.trace, sess={"PeerAddr": self.peer_addr}))

    async def _dispatch(
        self, request: XsfRequest, handle: str, context: grpc.aio.ServicerContext, caller: Caller, routed: Routed
    ) -> bytes:
        op = request.op
        service = routed.service
        if first_frame(request):
            frame = Wire(XSF, request.data)
            call = grpc_context(handle, context, self.callers, request.trace)
            if not routed.session:  # a one-shot call: the worker builds the whole ResData
                if "waitTime" in request.param:  # the original's one-shot waits at most this long
                    tighter(call, max(wait_ms(request.param), 1) / 1000)
                reply = await service.once(call, frame)
                assert isinstance(reply, bytes)
                return reply
            engine, session = await service.open(call, frame, ordered=True)
            head = self._head(request, handle).SerializeToString()
            return head + await self._available(engine, session, LoaderOutput.BEGIN)
        head = self._head(request, handle).SerializeToString()
        engine = service.engine
        if op == "AIIn":
            session = engine.session(handle, caller)
            await engine.write(session, Wire(XSF, request.data))
            return head + await self._available(engine, session, LoaderOutput.CONTINUE)
        if op == "AIOut":
            session = engine.session(handle, caller)
            output = await engine.read(session, wait_ms(request.param) / 1000)
            return head + (output if isinstance(output, bytes) else empty(session.service_id, LoaderOutput.CONTINUE))
        if op == "AIExcp":
            session = engine.session(handle, caller)
            engine.close(session, reason="aborted")
            return head + empty(session.service_id, LoaderOutput.END)
        if op in RUNTIME_OPS:
            await run_op(service.current().engine, request)
            return head + empty("", LoaderOutput.BEGIN)
        if op in NO_OP_OPS:
            return head + empty("", LoaderOutput.BEGIN)
        raise AigesError(ErrorCode.INVALID_OP, f"invalid service operation {op!r}")

    @staticmethod
    async def _available(engine: Engine, session: Session, status: int) -> bytes:
        """A write never waits for results: it returns the next batch if one is ready."""
        output = await engine.read(session, 0)
        return output if isinstance(output, bytes) else empty(session.service_id, status)


async def _raise(error: AigesError) -> bytes:
    """A request that fails before it reaches a service, through the one error path."""
    raise error
