"""The OIP model repository extension from the client side: list a daemon's services, add or
replace one (``RepositoryModelLoad``), remove one (``RepositoryModelUnload``), over a channel
made by ``credentials.open_channel`` (TLS and signing as for every call). What ``aiges service``
uses; Triton's own clients (``tritonclient``) speak the same methods."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from aiges.protocol import oip_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"


@dataclass(frozen=True)
class ServiceRow:
    name: str
    version: str
    state: str
    reason: str


class Repository:
    def __init__(self, channel: grpc.Channel, timeout: float = 900.0) -> None:
        self.channel = channel
        self.timeout = timeout

    def _call(self, method: str, request: Any, response: Any) -> Any:
        call = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        return call(request, timeout=self.timeout)

    def index(self, ready_only: bool = False) -> list[ServiceRow]:
        reply = self._call("RepositoryIndex", pb.RepositoryIndexRequest(ready=ready_only), pb.RepositoryIndexResponse)
        return [ServiceRow(m.name, m.version, m.state, m.reason) for m in reply.models]

    def load(self, name: str, table: dict[str, Any] | None = None) -> None:
        """Add ``name`` (or replace it, when served) with ``table`` (the ``[[service]]`` shape);
        without one, a served service is replaced by its own entry. Returns once it serves;
        raises grpc.RpcError (details ``<code>: <message>``) when it does not."""
        request = pb.RepositoryModelLoadRequest(model_name=name)
        if table is not None:
            request.parameters["config"].string_param = json.dumps(table)
        self._call("RepositoryModelLoad", request, pb.RepositoryModelLoadResponse)

    def unload(self, name: str) -> None:
        """Remove ``name``; returns once its calls and sessions have finished (or the drain timed out)."""
        self._call(
            "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=name), pb.RepositoryModelUnloadResponse
        )
