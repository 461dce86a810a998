"""The xsf front: ``utils.XsfCall/call``, as existing AIGes/AthenaServing clients speak it.

Requests arrive as raw bytes (no gRPC-level deserializer), so a malformed message becomes an
AIGes 10401 reply instead of a transport error. Every failure travels inside the LoaderOutput
(``code``, ``err``, status END) with ``ResData.code`` 0, except 10110 (no licence), which also
sets ``ResData.code`` so xsf clients retry elsewhere.
"""

from __future__ import annotations

import time

import grpc
import structlog
from google.protobuf.message import DecodeError

from aiges.engine.engine import Engine
from aiges.engine.types import DataStatus, Request
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import codec
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session

log = structlog.get_logger("aiges.xsf")

NO_OP_OPS = frozenset({"AIHotword", "AILBType", "AIDetect", "AILoad", "AIUnLoad"})
FIRST_FRAME = "1"


class XsfService:
    def __init__(self, engine: Engine, handles: HandleGenerator, header_pass: tuple[str, ...], peer_addr: str) -> None:
        self.engine = engine
        self.handles = handles
        self.header_pass = header_pass
        self.peer_addr = peer_addr

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
        reply = ResData(s=Session(h=handle, t=request.s.t, sess={"PeerAddr": self.peer_addr}))
        op = request.op
        if op == "ping":
            return reply.SerializeToString()
        service_id = ""
        try:
            message = codec.decode_input(request.data[0].data) if request.data else LoaderInput()
            service_id = message.serviceId
            output = await self._dispatch(op, request, message, handle)
        except AigesError as exc:
            output = codec.error_output(service_id, exc)
            if exc.code == ErrorCode.LICENSE_NOT_ENOUGH:
                reply.code = exc.code
                reply.error_info = exc.message
            log.warning("call failed", op=op, sid=handle, code=exc.code, error=exc.message,
                        ms=round((time.perf_counter() - started) * 1000, 3))
        reply.data.append(DataMeta(data=output.SerializeToString()))
        return reply.SerializeToString()

    async def _dispatch(self, op: str, request: ReqData, message: LoaderInput, handle: str) -> LoaderOutput:
        if op == "AIIn":
            if request.param.get("SeqNo") == FIRST_FRAME and message.state == LoaderInput.ONCE:
                return await self._once(message, handle)
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {handle}")
        if op in NO_OP_OPS:
            return LoaderOutput(serviceId=message.serviceId, code=0)
        raise AigesError(ErrorCode.INVALID_OP, f"invalid service operation {op!r}")

    async def _once(self, message: LoaderInput, handle: str) -> LoaderOutput:
        if not message.pl:
            raise AigesError(ErrorCode.INVALID_DATA, "input invalid data: the request carries no payloads")
        request = Request(
            params=codec.input_params(message, self.header_pass),
            items=codec.input_items(message, DataStatus.ONCE),
            tag=handle,
        )
        results = await self.engine.once(request)
        return codec.once_output(message.serviceId, results, codec.expect_index(message))
