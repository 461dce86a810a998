"""The OIP model repository extension over gRPC, as Triton serves it on
``inference.GRPCInferenceService``: ``RepositoryIndex`` lists every service, ``RepositoryModelLoad``
adds or replaces one, ``RepositoryModelUnload`` removes one (``aiges.server.repository``).

A load's parameters: ``config``, the service's table in the ``[[service]]`` shape as JSON (what
``tritonclient``'s ``load_model(name, config=...)`` sends), or ``wrapper`` alone (a folder, a
wrapper.py or a .so the server can read); neither, for a served service, replaces it with its own
entry. Load and unload are admin operations when callers are authenticated (10137).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from aiges.engine.context import Caller
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import oip_pb2 as pb
from aiges.server.observe import FrontCalls
from aiges.server.security.caller import GrpcCallers, admin_refusal

if TYPE_CHECKING:
    from aiges.server.repository import Repository


def parameter_value(parameter: pb.ModelRepositoryParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def load_table(parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The service's table from a load's parameters (``config`` JSON, or ``wrapper``); None for neither."""
    config = parameters.get("config")
    if isinstance(config, bytes):
        config = config.decode("utf-8", errors="replace")
    if config:
        try:
            table = json.loads(config)
        except json.JSONDecodeError as exc:
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"the config parameter is not JSON: {exc}") from None
        if not isinstance(table, dict):
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, "the config parameter must be a JSON object")
        return table
    wrapper = parameters.get("wrapper")
    if wrapper:
        return {"wrapper": str(wrapper)}
    return None


def require_admin(caller: Caller, what: str) -> None:
    if caller.authenticated and not caller.admin:
        raise admin_refusal(caller, what)


class RepositoryMethods:
    def __init__(self, repository: Repository, callers: GrpcCallers, calls: FrontCalls) -> None:
        self.repository = repository
        self.callers = callers
        self.calls = calls

    def handlers(self, unary: Callable[[Any, Any, Any], grpc.RpcMethodHandler]) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "RepositoryIndex": unary(self.index, pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
            "RepositoryModelLoad": unary(self.load, pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
            "RepositoryModelUnload": unary(
                self.unload, pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse
            ),
        }

    async def index(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for row in self.repository.index(ready_only=request.ready):
            response.models.add(**row)
        return response

    async def load(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        from aiges.server.grpc.oip import abort

        async def body() -> pb.RepositoryModelLoadResponse:
            require_admin(self.callers.of(context), "RepositoryModelLoad")
            parameters = {key: parameter_value(value) for key, value in request.parameters.items()}
            await self.repository.load(request.model_name, load_table(parameters))
            return pb.RepositoryModelLoadResponse()

        return await self.calls.run("RepositoryModelLoad", "", body(), abort, context)

    async def unload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        from aiges.server.grpc.oip import abort

        async def body() -> pb.RepositoryModelUnloadResponse:
            require_admin(self.callers.of(context), "RepositoryModelUnload")
            await self.repository.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self.calls.run("RepositoryModelUnload", "", body(), abort, context)
