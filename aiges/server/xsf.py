"""The xsf front: ``utils.XsfCall/call``, as existing AIGes/AthenaServing clients speak it.

    AIIn  SeqNo=1, state ONCE     one-shot call
    AIIn  SeqNo=1, state STREAM   open a session (its headers, params and expect hold for the whole
                                  session; its payloads are written too)
    AIIn  (no SeqNo)              write a frame (reordered by sync_id); returns output already ready
    AIOut                         the next output batch, waiting at most waitTime ms (default 500)
    AIExcp                        abort the session

The front only routes: it reads the op, handle and params of the ReqData and passes
``data[0].data`` untouched to a worker, which decodes it and encodes the reply: the whole ResData
of a one-shot call, or the ``data`` field of a session's output, which goes out after this
front's own ResData fields (protobuf merges concatenated messages). Payloads are never decoded or
re-encoded here.

Requests arrive as raw bytes (no gRPC-level deserializer), so a malformed message becomes an
AIGes 10401 reply instead of a transport error. Every failure travels inside the LoaderOutput
(``code``, ``err``, status END) with ``ResData.code`` 0, except 10110 (no licence), which also
sets ``ResData.code`` so xsf clients retry elsewhere. An error on a session ends the session.
"""

from __future__ import annotations

import time

import grpc
import structlog
from google.protobuf.message import DecodeError

from aiges.engine.engine import Engine
from aiges.engine.sessions import Session
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import REQUEST, RequestCounter
from aiges.protocol import codec
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.v2_pb2 import LoaderOutput
from aiges.protocol.xsf_pb2 import ReqData, ResData
from aiges.protocol.xsf_pb2 import Session as XsfSession

log = structlog.get_logger("aiges.xsf")

NO_OP_OPS = frozenset({"AIHotword", "AILBType", "AIDetect", "AILoad", "AIUnLoad"})
FIRST_FRAME = "1"
DEFAULT_WAIT_MS = 500


def wait_ms(param) -> int:
    """``waitTime``: default 500 ms; unparsable means 0, as in the original."""
    text = param.get("waitTime")
    if text is None:
        return DEFAULT_WAIT_MS
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def empty(service_id: str, status: int) -> bytes:
    return codec.wrap(codec.status_output(service_id, status), codec.XSF)


class XsfService:
    def __init__(self, engine: Engine, handles: HandleGenerator, peer_addr: str, debug: bool = False) -> None:
        self.engine = engine
        self.handles = handles
        self.peer_addr = peer_addr
        self.debug = debug
        self._durations = {op: REQUEST.labels("xsf", op) for op in ("AIIn", "AIOut", "AIExcp")}
        self._other = REQUEST.labels("xsf", "other")
        self._counts = RequestCounter("xsf")

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "utils.XsfCall", {"call": grpc.unary_unary_rpc_method_handler(self.call)}
        )

    async def call(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            request = ReqData.FromString(raw)
        except DecodeError as exc:
            log.warning("malformed request", code=ErrorCode.PB_UNMARSHAL, error=str(exc))
            return ResData(
                code=ErrorCode.PB_UNMARSHAL, error_info=f"request is not a utils.ReqData: {exc}"
            ).SerializeToString()
        handle = request.s.h or self.handles.next()
        head = ResData(s=XsfSession(h=handle, t=request.s.t, sess={"PeerAddr": self.peer_addr}))
        op = request.op
        if op == "ping":
            return head.SerializeToString()
        worker = -1
        try:
            if op == "AIIn" and request.param.get("SeqNo") == FIRST_FRAME:
                first = await self.engine.first(
                    handle, request.data[0].data if request.data else b"", codec.XSF, trace=request.s.t
                )
                worker = first.worker
                if first.output is not None:
                    self._done(op, handle, 0, started, worker)
                    return first.output
                body = await self._available(first.session, LoaderOutput.BEGIN)
            else:
                body = await self._dispatch(op, request, handle)
        except AigesError as exc:
            body = codec.wrap(codec.error_output("", exc), codec.XSF)
            if exc.code == ErrorCode.LICENSE_NOT_ENOUGH:
                head.code = exc.code
                head.error_info = exc.message
            log.warning("call failed", op=op, sid=handle, code=exc.code, error=exc.message,
                        ms=round((time.perf_counter() - started) * 1000, 3))
            self._done(op, handle, exc.code, started, worker, logged=True)
            return head.SerializeToString() + body
        self._done(op, handle, 0, started, worker)
        return head.SerializeToString() + body

    def _done(self, op: str, handle: str, code: int, started: float, worker: int, logged: bool = False) -> None:
        elapsed = time.perf_counter() - started
        self._durations.get(op, self._other).observe(elapsed)
        self._counts.count(op if op in self._durations else "other", code)
        if self.debug and not logged:
            log.debug("call", op=op, sid=handle, code=code, worker=worker, ms=round(elapsed * 1000, 3))

    async def _dispatch(self, op: str, request: ReqData, handle: str) -> bytes:
        if op == "AIIn":
            session = self.engine.get(handle)
            await self.engine.write(session, request.data[0].data if request.data else b"")
            return await self._available(session, LoaderOutput.CONTINUE)
        if op == "AIOut":
            session = self.engine.get(handle)
            output = await self.engine.read(session, wait_ms(request.param) / 1000)
            return output if output is not None else empty(session.service_id, LoaderOutput.CONTINUE)
        if op == "AIExcp":
            session = self.engine.get(handle)
            self.engine.close(session, reason="aborted")
            return empty(session.service_id, LoaderOutput.END)
        if op in NO_OP_OPS:
            return empty("", LoaderOutput.BEGIN)
        raise AigesError(ErrorCode.INVALID_OP, f"invalid service operation {op!r}")

    async def _available(self, session: Session, status: int) -> bytes:
        """A write never waits for results: it returns the next batch if one is ready."""
        output = await self.engine.read(session, 0)
        return output if output is not None else empty(session.service_id, status)
