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
from aiges.protocol.xsf_request import XsfRequest, opens_session, parse_request
from aiges.server.grpc.forwarding import SessionForwarder
from aiges.server.grpc.runtime_ops import RUNTIME_OPS, run_op
from aiges.server.observe import FrontCalls
from aiges.server.request_context import grpc_context, tighter
from aiges.server.retry_hints import grpc_hints
from aiges.server.security.caller import ADMIN_OPS, CallerSource, GrpcCallers, require_admin

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


class XsfService:
    def __init__(
        self,
        engine: Engine,
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
        self.engine = engine
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
        else:
            body = self._dispatch(request, handle, context, caller)
        return await self.calls.run(op, handle, body, self._wire_error, request, handle, context)

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
            return await self._dispatch(request, handle, context, caller)
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
        self, request: XsfRequest, handle: str, context: grpc.aio.ServicerContext, caller: Caller
    ) -> bytes:
        op = request.op
        if first_frame(request):
            frame = Wire(XSF, request.data)
            call = grpc_context(handle, context, self.callers, request.trace)
            if not opens_session(request.data):  # a one-shot call: the worker builds the whole ResData
                if "waitTime" in request.param:  # the original's one-shot waits at most this long
                    tighter(call, max(wait_ms(request.param), 1) / 1000)
                reply = await self.engine.once(call, frame)
                assert isinstance(reply, bytes)
                return reply
            session = await self.engine.open(call, frame, ordered=True)
            return self._head(request, handle).SerializeToString() + await self._available(session, LoaderOutput.BEGIN)
        head = self._head(request, handle).SerializeToString()
        if op == "AIIn":
            session = self.engine.session(handle, caller)
            await self.engine.write(session, Wire(XSF, request.data))
            return head + await self._available(session, LoaderOutput.CONTINUE)
        if op == "AIOut":
            session = self.engine.session(handle, caller)
            output = await self.engine.read(session, wait_ms(request.param) / 1000)
            return head + (output if isinstance(output, bytes) else empty(session.service_id, LoaderOutput.CONTINUE))
        if op == "AIExcp":
            session = self.engine.session(handle, caller)
            self.engine.close(session, reason="aborted")
            return head + empty(session.service_id, LoaderOutput.END)
        if op in RUNTIME_OPS:
            await run_op(self.engine, request)
            return head + empty("", LoaderOutput.BEGIN)
        if op in NO_OP_OPS:
            return head + empty("", LoaderOutput.BEGIN)
        raise AigesError(ErrorCode.INVALID_OP, f"invalid service operation {op!r}")

    async def _available(self, session: Session, status: int) -> bytes:
        """A write never waits for results: it returns the next batch if one is ready."""
        output = await self.engine.read(session, 0)
        return output if isinstance(output, bytes) else empty(session.service_id, status)
