"""``ModelStreamInfer``: one OIP stream, carrying any number of sequences and one-shot calls.

Requests with a ``sequence_id`` parameter belong to that sequence's session: ``sequence_start``
opens a new one (ending the sequence's input if it was open), ``sequence_end`` ends its input; a
request for a sequence that is not open gets 10101. A request without one is a session of its own
whose outputs stream back (or, for a wrapper without sessions, one one-shot answer). Each
sequence is a session on the session bridge (``aiges.server.session_bridge``), whose codec here
turns its requests into frames and its outputs into responses that carry the latest request's
id; every error is a response with ``error_message`` (``<code>: <message>``) and the stream goes
on. Each request goes to the service its model names, so one stream may call several. Responses
wait in a small queue for the client, so a client that does not read stops the
sessions' reading (and, through their output budgets, their wrappers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiges.engine.context import Caller, RequestContext
from aiges.engine.items import DataStatus
from aiges.engine.messages import Output
from aiges.engine.sessions import Session
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import oip_pb2 as pb
from aiges.protocol import oip_tensors as oip
from aiges.server.model import Model, ModelNotFound
from aiges.server.request_context import with_oip_parameters
from aiges.server.service import Service
from aiges.server.session_bridge import Decoded

if TYPE_CHECKING:
    from aiges.server.grpc.oip import OipService

RESPONSES_QUEUED = 8
"""Responses of one ModelStreamInfer call waiting for the client; more wait in their sessions."""
OP = "ModelStreamInfer"
ContextOf = Callable[[str], RequestContext]
"""The context of a call on this stream, by its handle."""
SEQUENCE_OP = "sequence"


@dataclass(frozen=True, slots=True)
class SequenceRequest:
    """A request of a sequence, checked and read: its id, its tensors, its place in the input."""

    request_id: str
    call: oip.Request
    status: int
    last: bool


def error_response(request_id: str, error: AigesError) -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse(
        error_message=f"{error.code}: {error.message}", infer_response=pb.ModelInferResponse(id=request_id)
    )


class SequenceCodec:
    """A sequence's requests -> frames; its outputs -> responses for the latest request."""

    half_close_finishes = True

    def __init__(self, model: Model, tag: str, sequence_id: str) -> None:
        self.model = model
        self.tag = tag
        self.sequence_id = sequence_id
        self.request_id = ""
        self.outputs: list[str] = []

    def _frame(self, message: SequenceRequest, first: bool) -> Decoded:
        self.request_id, self.outputs = message.request_id, message.call.outputs
        frame = oip.items_frame(
            message.call, self.model.name, self.model.schema, self.tag, status=message.status, first=first
        )
        return Decoded(frame, message.last)

    def first(self, message: SequenceRequest) -> Decoded:
        return self._frame(message, first=True)

    def next(self, message: SequenceRequest) -> Decoded:
        return self._frame(message, first=False)

    def output(self, session: Session, output: Output) -> pb.ModelStreamInferResponse:
        from aiges.server.grpc.oip import to_response

        response = to_response(self.model, self.request_id, output, self.outputs)
        if self.sequence_id:
            response.parameters["sequence_id"].string_param = self.sequence_id
        return pb.ModelStreamInferResponse(infer_response=response)

    def error(self, session: Session | None, error: AigesError) -> pb.ModelStreamInferResponse:
        return error_response(self.request_id, error)


class Sequence:
    """One session on the stream, fed through a queue by the stream's reader."""

    def __init__(self, stream: InferStream, context: RequestContext, codec: SequenceCodec, service: Service) -> None:
        self.stream = stream
        self.codec = codec
        self.service = service
        self._inbound: asyncio.Queue[SequenceRequest | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(context))

    async def _requests(self) -> AsyncIterator[SequenceRequest]:
        while (message := await self._inbound.get()) is not None:
            yield message

    async def _run(self, context: RequestContext) -> None:
        bridge = self.stream.service.sequences
        replies = bridge.stream(lambda: context, self.codec, self._requests(), target=self.service)
        async with aclosing(replies):
            async for reply in replies:
                await self.stream.responses.put(reply)

    def send(self, message: SequenceRequest) -> None:
        self._inbound.put_nowait(message)
        if message.last:
            self.end_input()

    def end_input(self) -> None:
        self._inbound.put_nowait(None)


class InferStream:
    """One ModelStreamInfer call: its sequences, and the responses they produce."""

    def __init__(self, service: OipService, context_of: ContextOf, caller: Caller | None = None) -> None:
        self.service = service
        self.context_of = context_of
        self.caller = caller
        self.sequences: dict[str, Sequence] = {}
        self.running: set[Sequence] = set()
        self.responses: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue(RESPONSES_QUEUED)

    async def read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        calls = self.service.calls
        try:
            async for request in requests:
                await calls.run(OP, request.id, self.handle(request), self.fail, request.id)
        except Exception as exc:  # noqa: BLE001 - grpc raises whatever decoding a message raised
            error = AigesError(ErrorCode.PB_UNMARSHAL, f"a message is not a ModelInferRequest: {exc}")
            calls.failed(OP, "", error)
            await self.fail(error, "")
            await self.responses.put(None)
            return
        for sequence in self.sequences.values():
            sequence.end_input()
        if self.running:
            await asyncio.wait({s.task for s in self.running})
        await self.responses.put(None)  # not when cancelled: nobody reads the queue then

    def current_model(self, request: pb.ModelInferRequest) -> tuple[Service, Model]:
        """The service the request's model names, and its model."""
        try:
            return self.service.services.by_model(request.model_name, request.model_version, self.caller)
        except ModelNotFound as exc:
            raise oip.invalid(str(exc)) from None

    async def handle(self, request: pb.ModelInferRequest) -> None:
        from aiges.server.grpc.oip import parameter_text, to_request, to_response

        target, model = self.current_model(request)
        parameters = {k: parameter_text(v) for k, v in request.parameters.items()}
        sequence_id = parameters.get("sequence_id", "0")
        sequence_id = "" if sequence_id == "0" else sequence_id
        call = to_request(request)
        model.check_outputs(call.outputs)
        tag = self.service.handles.next()
        if not sequence_id and not model.sessions:
            frame = oip.items_frame(call, model.name, model.schema, tag)
            output = await target.once(with_oip_parameters(self.context_of(tag), call.parameters), frame)
            await self.responses.put(
                pb.ModelStreamInferResponse(infer_response=to_response(model, request.id, output, call.outputs))
            )
            return
        start = oip.parse_flag(parameters.get("sequence_start")) or not sequence_id
        end = oip.parse_flag(parameters.get("sequence_end")) or not sequence_id
        if not start and sequence_id not in self.sequences:
            raise AigesError(
                ErrorCode.ENGINE_INACTIVE,
                f"sequence {sequence_id} is not open on this stream; start it with sequence_start",
            )
        status = DataStatus.END if end else DataStatus.BEGIN if start else DataStatus.CONTINUE
        message = SequenceRequest(request.id, call, status, end)
        if start:
            previous = self.sequences.pop(sequence_id, None)
            if previous is not None:
                previous.end_input()
            context = with_oip_parameters(self.context_of(tag), call.parameters)
            sequence = Sequence(self, context, SequenceCodec(model, tag, sequence_id), target)
            self.running.add(sequence)
            sequence.task.add_done_callback(lambda _: self._ended(sequence))
            if sequence_id and not end:
                self.sequences[sequence_id] = sequence
        else:
            sequence = self.sequences[sequence_id]
            if end:
                del self.sequences[sequence_id]
        sequence.send(message)

    def _ended(self, sequence: Sequence) -> None:
        self.running.discard(sequence)
        sequence_id = sequence.codec.sequence_id
        if self.sequences.get(sequence_id) is sequence:
            del self.sequences[sequence_id]

    async def fail(self, error: AigesError, request_id: str) -> None:
        await self.responses.put(error_response(request_id, error))

    async def close(self) -> None:
        """The call ended: every session still running ends with it."""
        tasks = [sequence.task for sequence in self.running]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
