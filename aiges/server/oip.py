"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on the service port.

The model is the wrapper (its serviceId and version). ModelInfer is a one-shot call. On
ModelStreamInfer, requests that carry a ``sequence_id`` parameter belong to that sequence's
session (``sequence_start`` opens a new one, ``sequence_end`` ends its input; a request for a
sequence that is not open gets 10101), so several
sequences can share one stream; a request without one is a session of its own whose outputs
stream back until the wrapper ends them (a wrapper without sessions answers it once). Errors are
gRPC statuses on the unary methods and ``error_message`` responses on the stream, each carrying the
AIGes code (also in the ``aiges-code`` trailer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import structlog

from aiges import __version__
from aiges.engine.engine import Engine
from aiges.errors import AigesError, ErrorCode, http_status
from aiges.metrics import RequestCounter
from aiges.protocol import oip
from aiges.protocol import oip_pb2 as pb
from aiges.protocol.handle import HandleGenerator
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.server.calls import SessionCall, call_once

log = structlog.get_logger("aiges.oip")

SERVICE = "inference.GRPCInferenceService"
RESPONSES_QUEUED = 8
"""Responses of one ModelStreamInfer call waiting for the client; more wait in their sessions."""
GRPC_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
               503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
BEGIN, CONTINUE, END = 0, 1, 2


def parameter_text(parameter: pb.InferParameter) -> str:
    choice = parameter.WhichOneof("parameter_choice")
    value = getattr(parameter, choice) if choice else ""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def to_request(request: pb.ModelInferRequest) -> oip.Request:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise oip.invalid(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors = []
    for index, tensor in enumerate(request.inputs):
        oip.check_datatype(tensor.name, tensor.datatype)
        shape = oip.check_shape(tensor.name, tensor.shape)
        if raw:
            data = raw[index]
        else:
            values = list(getattr(tensor.contents, CONTENTS.get(tensor.datatype, "bytes_contents")))
            data = oip.from_values(tensor.name, tensor.datatype, shape, values)
        parameters = {k: parameter_text(v) for k, v in tensor.parameters.items()}
        tensors.append(oip.Tensor(tensor.name, tensor.datatype, shape, data, parameters))
    return oip.Request(tensors, [o.name for o in request.outputs],
                       {k: parameter_text(v) for k, v in request.parameters.items()})


def to_response(model: oip.Model, request_id: str, output: LoaderOutput, requested: list[str]) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request_id)
    for tensor in oip.output_tensors(output, requested):
        entry = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        for key, value in tensor.parameters.items():
            entry.parameters[key].string_param = value
        response.raw_output_contents.append(tensor.data)
    return response


class OipService:
    def __init__(self, engine: Engine, handles: HandleGenerator, model: Callable[[], oip.Model | None],
                 ready: Callable[[], bool]) -> None:
        self.engine = engine
        self.handles = handles
        self.model = model
        self.ready = ready
        self.counts = RequestCounter("oip")

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        def unary(method, request, response):
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request.FromString, response_serializer=response.SerializeToString)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                self.model_stream_infer, request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelStreamInferResponse.SerializeToString),
        })

    async def server_live(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready())

    async def server_metadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="aiges", version=__version__, extensions=["sequence"])

    async def model_ready(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        """Not ready, rather than an error, for a model this server does not serve (as Triton)."""
        model = self.model()
        try:
            served = model is not None and model.check(request.name, request.version) is None
        except oip.ModelNotFound:
            served = False
        return pb.ModelReadyResponse(ready=served and self.ready())

    async def model_metadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        model = await self._model(request.name, request.version, context)
        metadata = model.metadata()
        response = pb.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                            platform=metadata["platform"])
        for kind in ("inputs", "outputs"):
            for tensor in metadata[kind]:
                getattr(response, kind).add(**tensor)
        return response

    async def _model(self, name: str, version: str, context: grpc.aio.ServicerContext) -> oip.Model:
        model = self.model()
        if model is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is still loading")
        try:
            model.check(name, version)
        except oip.ModelNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return model

    async def model_infer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext):
        model = await self._model(request.model_name, request.model_version, context)
        tag = self.handles.next()
        code = 0
        try:
            call = to_request(request)
            model.check_outputs(call.outputs)
            message = oip.loader_input(call, model.name, model.schema, tag)
            output = await call_once(self.engine, tag, message)
            return to_response(model, request.id, output, call.outputs)
        except AigesError as exc:
            code = exc.code
            log.warning("call failed", op="ModelInfer", sid=tag, code=exc.code, error=exc.message)
            await context.abort(GRPC_STATUS.get(http_status(exc.code), grpc.StatusCode.INTERNAL),
                                f"{exc.code}: {exc.message}", trailing_metadata=(("aiges-code", str(exc.code)),))
        finally:
            self.counts.count("ModelInfer", code)

    async def model_stream_infer(self, requests: AsyncIterator[pb.ModelInferRequest],
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelStreamInferResponse]:
        stream = InferStream(self, self.model())
        reader = asyncio.create_task(stream.read(requests))
        try:
            while (response := await stream.responses.get()) is not None:
                yield response
        finally:
            stream.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@dataclass
class Sequence:
    """One session on a stream: the latest request id (its responses carry it) and the outputs
    that request named."""

    call: SessionCall
    request_id: str
    outputs: list[str]
    sequence_id: str = ""


class InferStream:
    """One ModelStreamInfer call: its sequences' sessions, and the responses they produce."""

    def __init__(self, service: OipService, model: oip.Model | None) -> None:
        self.service = service
        self.model = model
        self.sequences: dict[str, Sequence] = {}
        self.pumps: set[asyncio.Task] = set()
        self.responses: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue(RESPONSES_QUEUED)

    async def read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        try:
            async for request in requests:
                try:
                    await self.handle(request)
                except AigesError as exc:
                    await self.fail(request.id, exc)
        except Exception as exc:  # noqa: BLE001 - grpc raises whatever decoding a message raised
            await self.fail("", AigesError(ErrorCode.PB_UNMARSHAL, f"a message is not a ModelInferRequest: {exc}"))
            await self.responses.put(None)
            return
        try:
            for sequence in list(self.sequences.values()):
                sequence.call.finish()
            if self.pumps:
                await asyncio.wait(set(self.pumps))
        finally:
            await self.responses.put(None)

    def current_model(self, request: pb.ModelInferRequest) -> oip.Model:
        if self.model is None:
            self.model = self.service.model()
            if self.model is None:
                raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, "the model is still loading")
        try:
            self.model.check(request.model_name, request.model_version)
        except oip.ModelNotFound as exc:
            raise oip.invalid(str(exc)) from None
        return self.model

    async def handle(self, request: pb.ModelInferRequest) -> None:
        model = self.current_model(request)
        parameters = {k: parameter_text(v) for k, v in request.parameters.items()}
        sequence_id = parameters.get("sequence_id", "0")
        sequence_id = "" if sequence_id == "0" else sequence_id
        call = to_request(request)
        model.check_outputs(call.outputs)
        tag = self.service.handles.next()
        if not sequence_id and not model.sessions:
            output = await call_once(self.service.engine, tag, oip.loader_input(call, model.name, model.schema, tag))
            await self.push(to_response(model, request.id, output, call.outputs))
            return
        start = oip.parse_flag(parameters.get("sequence_start")) or not sequence_id
        end = oip.parse_flag(parameters.get("sequence_end")) or not sequence_id
        if not start and sequence_id not in self.sequences:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"sequence {sequence_id} is not open on this stream; "
                                                        "start it with sequence_start")
        if start and sequence_id in self.sequences:
            self.sequences.pop(sequence_id).call.finish()
        status = END if end else BEGIN if start else CONTINUE
        if start:
            message = oip.loader_input(call, model.name, model.schema, tag, state=LoaderInput.STREAM, status=status)
            sequence = Sequence(await SessionCall.open(self.service.engine, tag, message), request.id, call.outputs,
                                sequence_id)
            if sequence_id:
                self.sequences[sequence_id] = sequence
            self._pump(sequence)
        else:
            sequence = self.sequences[sequence_id]
            sequence.request_id = request.id
            await sequence.call.write(oip.loader_input(call, model.name, model.schema, tag,
                                                       state=LoaderInput.STREAM, status=status, first=False))
        if end:
            sequence.call.finish()
            self.sequences.pop(sequence_id, None)

    def _pump(self, sequence: Sequence) -> None:
        task = asyncio.create_task(self._forward(sequence))
        self.pumps.add(task)
        task.add_done_callback(self.pumps.discard)

    async def _forward(self, sequence: Sequence) -> None:
        """A session's output batches -> responses; the session ends with its output, or with the
        stream (cancelled)."""
        try:
            async for output in sequence.call.outputs():
                response = to_response(self.model, sequence.request_id, output, sequence.outputs)
                if sequence.sequence_id:
                    response.parameters["sequence_id"].string_param = sequence.sequence_id
                await self.push(response)
        except AigesError as exc:
            await self.fail(sequence.request_id, exc)
        finally:
            sequence.call.close("stream ended")
            if self.sequences.get(sequence.sequence_id) is sequence:
                del self.sequences[sequence.sequence_id]

    async def push(self, response: pb.ModelInferResponse) -> None:
        """Queue a response for the client; waits while the queue is full, so a client that does
        not read stops the sessions' reading (and, through their budgets, their wrappers)."""
        self.service.counts.count("ModelStreamInfer", 0)
        await self.responses.put(pb.ModelStreamInferResponse(infer_response=response))

    async def fail(self, request_id: str, error: AigesError) -> None:
        log.warning("call failed", op="ModelStreamInfer", id=request_id, code=error.code, error=error.message)
        self.service.counts.count("ModelStreamInfer", error.code)
        await self.responses.put(pb.ModelStreamInferResponse(
            error_message=f"{error.code}: {error.message}", infer_response=pb.ModelInferResponse(id=request_id)))

    def close(self) -> None:
        """The call ended: every session still running ends with it."""
        for task in list(self.pumps):
            task.cancel()
