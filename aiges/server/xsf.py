"""The xsf front: ``utils.XsfCall/call``, as existing AIGes/AthenaServing clients speak it.

    AIIn  SeqNo=1, state ONCE     one-shot call
    AIIn  SeqNo=1, state STREAM   open a session (its headers, params and expect hold for the whole
                                  session; its payloads are written too)
    AIIn  (no SeqNo)              write a frame (reordered by sync_id); returns output already ready
    AIOut                         the next output batch, waiting at most waitTime ms (default 500)
    AIExcp                        abort the session

Requests arrive as raw bytes (no gRPC-level deserializer), so a malformed message becomes an
AIGes 10401 reply instead of a transport error. Every failure travels inside the LoaderOutput
(``code``, ``err``, status END) with ``ResData.code`` 0, except 10110 (no licence), which also
sets ``ResData.code`` so xsf clients retry elsewhere. An error on a session ends the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import structlog
from google.protobuf.message import DecodeError

from aiges.engine.engine import Engine
from aiges.engine.sessions import Session
from aiges.engine.types import DataItem, DataStatus, Request
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import codec
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData
from aiges.protocol.xsf_pb2 import Session as XsfSession

log = structlog.get_logger("aiges.xsf")

NO_OP_OPS = frozenset({"AIHotword", "AILBType", "AIDetect", "AILoad", "AIUnLoad"})
FIRST_FRAME = "1"
DEFAULT_WAIT_MS = 500


@dataclass
class StreamState:
    """What the xsf front keeps per session: the first frame's serviceId and expect list, and a
    running sequence number per output."""

    service_id: str
    expect: dict[str, MetaDesc]
    seq: dict[str, int] = field(default_factory=dict)

    def encode(self, items: list[DataItem]) -> LoaderOutput:
        numbers = {}
        for item in items:
            self.seq[item.key] = self.seq.get(item.key, 0) + 1
            numbers[item.key] = self.seq[item.key]
        return codec.stream_output(self.service_id, items, self.expect, numbers)


def wait_ms(param: dict) -> int:
    """``waitTime``: default 500 ms; unparsable means 0, as in the original."""
    text = param.get("waitTime")
    if text is None:
        return DEFAULT_WAIT_MS
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


@contextmanager
def ending_on_error(engine: Engine, session: Session) -> Iterator[None]:
    """Any AIGes error on a session ends it (the original releases the instance on error)."""
    try:
        yield
    except AigesError as exc:
        engine.close(session, reason=f"error {exc.code}")
        raise


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
        reply = ResData(s=XsfSession(h=handle, t=request.s.t, sess={"PeerAddr": self.peer_addr}))
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
            if request.param.get("SeqNo") == FIRST_FRAME:
                if message.state == LoaderInput.ONCE:
                    return await self._once(message, handle)
                return await self._open(message, handle)
            return await self._write(message, handle)
        if op == "AIOut":
            return await self._read(handle, wait_ms(request.param))
        if op == "AIExcp":
            session = self.engine.get(handle)
            self.engine.close(session, reason="aborted")
            return LoaderOutput(serviceId=session.front.service_id, code=0, status=LoaderOutput.END)
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

    async def _open(self, message: LoaderInput, handle: str) -> LoaderOutput:
        state = StreamState(message.serviceId, codec.expect_index(message))
        session = await self.engine.open(
            handle, codec.input_params(message, self.header_pass), first_seq=message.sync_id, front=state
        )
        return await self._write_frame(session, message, empty_status=LoaderOutput.BEGIN)

    async def _write(self, message: LoaderInput, handle: str) -> LoaderOutput:
        return await self._write_frame(self.engine.get(handle), message, empty_status=LoaderOutput.CONTINUE)

    async def _write_frame(self, session: Session, message: LoaderInput, empty_status: int) -> LoaderOutput:
        with ending_on_error(self.engine, session):
            await self.engine.write(session, codec.input_items(message, DataStatus.CONTINUE), seq=message.sync_id)
            batch = await self.engine.read(session, 0)
            if batch is None:
                return LoaderOutput(serviceId=session.front.service_id, code=0, status=empty_status)
            return session.front.encode(batch)

    async def _read(self, handle: str, wait: int) -> LoaderOutput:
        session = self.engine.get(handle)
        with ending_on_error(self.engine, session):
            batch = await self.engine.read(session, wait / 1000)
            if batch is None:
                return LoaderOutput(serviceId=session.front.service_id, code=0, status=LoaderOutput.CONTINUE)
            return session.front.encode(batch)
