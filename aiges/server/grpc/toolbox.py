"""``utils.ToolBox/cmdserver``: the original loader's command endpoint.

``Request.query`` is JSON ``{"cmd": ...}``: ``health`` answers in the original's text form,
``status`` with the server's state as JSON, ``schema`` with the wrapper's schema (what
``aiges schema`` prints; ``aiges call`` builds its expect list from it), ``metrics`` with the
Prometheus text, ``reload`` reloads the wrapper (``aiges reload``; the answer, as JSON, once the
new workers serve or the reload has failed). With several services ``schema`` and ``reload`` take
``"service": NAME`` (``schema``: default the first; ``reload``: default every service, each one's
answer under ``services``); ``status`` lists every service under ``services``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import generate_latest

from aiges.metrics import REGISTRY
from aiges.protocol.xsf_pb2 import Request, Response

JSON_HEADERS = json.dumps({"Content-Type": "application/json"})
TEXT_HEADERS = json.dumps({"Content-Type": "text/plain"})


class ToolBoxService:
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        schema: Callable[[str], dict[str, Any] | None],
        reload: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """``schema`` and ``reload`` take the service's name ("": the default)."""
        self.snapshot = snapshot
        self.schema = schema
        self.reload = reload

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler = grpc.unary_unary_rpc_method_handler(
            self.cmdserver, request_deserializer=Request.FromString, response_serializer=Response.SerializeToString
        )
        return grpc.method_handlers_generic_handler("utils.ToolBox", {"cmdserver": handler})

    async def cmdserver(self, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            query = json.loads(request.query or "{}")
            command, service = query.get("cmd", ""), str(query.get("service", "") or "")
        except (json.JSONDecodeError, AttributeError):
            example = json.dumps({"cmd": "status"})
            return Response(headers=TEXT_HEADERS, body=f"query is not JSON like {example}: {request.query!r}")
        state = self.snapshot()
        if command == "health":
            # "staus" is the original loader's spelling, which its tools match on.
            return Response(headers=TEXT_HEADERS, body=f"health staus: {state['health']}")
        if command == "status":
            return Response(headers=JSON_HEADERS, body=json.dumps(state))
        if command == "schema":
            return Response(headers=JSON_HEADERS, body=json.dumps(self.schema(service)))
        if command == "metrics":
            return Response(headers=TEXT_HEADERS, body=generate_latest(REGISTRY).decode())
        if command == "reload" and self.reload is not None:
            return Response(headers=JSON_HEADERS, body=json.dumps(await self.reload(service)))
        return Response(
            headers=TEXT_HEADERS, body=f"unknown cmd {command!r}; known: health, status, schema, metrics, reload"
        )
