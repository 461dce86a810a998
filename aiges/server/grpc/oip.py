"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on the service port.

Each service is a model (its name: the wrapper's serviceId, or the ``[[service]]`` name; its
version): a request goes to the service its ``model_name`` (and ``model_version``, when given)
names. ModelInfer is a one-shot call. On
ModelStreamInfer, requests that carry a ``sequence_id`` parameter belong to that sequence's
session (``sequence_start`` opens a new one, ``sequence_end`` ends its input; a request for a
sequence that is not open gets 10101), so several sequences can share one stream; a request
without one is a session of its own whose outputs stream back until the wrapper ends them (a
wrapper without sessions answers it once). Errors are gRPC statuses on the unary methods and
``error_message`` responses on the stream, each carrying the AIGes code (also in the
``aiges-code`` trailer). Requests reach the engine as items (``messages.Items``).

The model repository extension (``RepositoryIndex``, ``RepositoryModelLoad``,
``RepositoryModelUnload``, as Triton serves them) lists, adds, replaces and removes services
while serving (``aiges.server.repository``); load and unload are admin operations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from aiges import __version__
from aiges.engine.items import DataStatus
from aiges.engine.messages import ItemsOutput
from aiges.errors import AigesError, ErrorCode, http_status
from aiges.protocol import oip_pb2 as pb
from aiges.protocol import oip_tensors as oip
from aiges.protocol.handle import HandleGenerator
from aiges.server.grpc.oip_repository import RepositoryMethods
from aiges.server.grpc.oip_stream import SEQUENCE_OP, InferStream
from aiges.server.model import Model, ModelLoading, ModelNotFound
from aiges.server.observe import FrontCalls
from aiges.server.request_context import grpc_context, with_oip_parameters
from aiges.server.retry_hints import grpc_hints
from aiges.server.security.caller import GrpcCallers
from aiges.server.service import Service
from aiges.server.services import Services
from aiges.server.session_bridge import SessionBridge

if TYPE_CHECKING:
    from aiges.server.repository import Repository

SERVICE = "inference.GRPCInferenceService"
GRPC_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
BEGIN, CONTINUE, END = DataStatus.BEGIN, DataStatus.CONTINUE, DataStatus.END


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
    return oip.Request(
        tensors, [o.name for o in request.outputs], {k: parameter_text(v) for k, v in request.parameters.items()}
    )


def to_response(
    model: Model, request_id: str, output: ItemsOutput | Any, requested: list[str]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request_id)
    for tensor in oip.output_tensors(output, requested):
        entry = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        for key, value in tensor.parameters.items():
            entry.parameters[key].string_param = value
        response.raw_output_contents.append(tensor.data)
    return response


class OipService:
    def __init__(
        self,
        services: Services,
        handles: HandleGenerator,
        ready: Callable[[], bool],
        callers: GrpcCallers | None = None,
        model_ready: Callable[[Service], bool] | None = None,
        repository: Repository | None = None,
    ) -> None:
        """``ready``: the server's readiness; ``model_ready``: a service's (default: the server's);
        ``repository``: the services loaded while serving (None: no repository extension)."""
        self.services = services
        self.handles = handles
        self.ready = ready
        self.model_ready_of = model_ready or (lambda service: ready())
        self.callers = callers if callers is not None else GrpcCallers()
        self.calls = FrontCalls("oip")
        self.sequences = SessionBridge(services, self.calls, SEQUENCE_OP)
        """The session bridge of ModelStreamInfer's sequences (``oip_stream``)."""
        self.repository = RepositoryMethods(repository, self.callers, self.calls) if repository is not None else None

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        def unary(method: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        methods = {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                self.model_stream_infer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelStreamInferResponse.SerializeToString,
            ),
        }
        if self.repository is not None:
            methods.update(self.repository.handlers(unary))
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    async def server_live(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready())

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        extensions = ["sequence", "model_repository"] if self.repository is not None else ["sequence"]
        return pb.ServerMetadataResponse(name="aiges", version=__version__, extensions=extensions)

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Not ready, rather than an error, for a model this server does not serve (as Triton)."""
        try:
            service, _ = self.services.by_model(request.name, request.version)
        except (ModelNotFound, ModelLoading):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.model_ready_of(service))

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def body() -> pb.ModelMetadataResponse:
            metadata = self._model(request.name, request.version, context)[1].metadata()
            response = pb.ModelMetadataResponse(
                name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
            )
            for kind in ("inputs", "outputs"):
                for tensor in metadata[kind]:
                    getattr(response, kind).add(**tensor)
            return response

        return await self.calls.run("ModelMetadata", "", body(), abort, context)

    def _model(self, name: str, version: str, context: grpc.aio.ServicerContext) -> tuple[Service, Model]:
        try:
            return self.services.by_model(name, version, self.callers.of(context))
        except ModelNotFound as exc:
            raise AigesError(ErrorCode.INVALID_HANDLE, str(exc)) from None

    async def model_infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        tag = self.handles.next()

        try:
            service, model = self._model(request.model_name, request.model_version, context)
        except AigesError as exc:
            return await self.calls.run("ModelInfer", tag, fail(exc), abort, context)

        async def body() -> pb.ModelInferResponse:
            call = to_request(request)
            model.check_outputs(call.outputs)
            frame = oip.items_frame(call, model.name, model.schema, tag)
            request_context = with_oip_parameters(grpc_context(tag, context, self.callers), call.parameters)
            output = await service.once(request_context, frame)
            return to_response(model, request.id, output, call.outputs)

        return await self.calls.run("ModelInfer", tag, body(), abort, context, service=service.label)

    async def model_stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        stream = InferStream(self, lambda tag: grpc_context(tag, context, self.callers), self.callers.of(context))
        reader = asyncio.create_task(stream.read(requests))
        try:
            while (response := await stream.responses.get()) is not None:
                yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await stream.close()


async def fail(error: AigesError) -> Any:
    """A request that fails before it reaches a service, through the one error path."""
    raise error


async def abort(error: AigesError, context: grpc.aio.ServicerContext) -> NoReturn:
    """An AigesError as the unary methods' wire form: a gRPC status carrying the AIGes code."""
    status = GRPC_STATUS.get(http_status(error.code), grpc.StatusCode.INTERNAL)
    trailers = (("aiges-code", str(error.code)), *grpc_hints(error))
    await context.abort(status, f"{error.code}: {error.message}", trailing_metadata=trailers)
    raise AssertionError("unreachable: abort raises")
