"""Caller checks on the gRPC port: a ``grpc.aio.ServerInterceptor`` in ``[auth] mode = "hmac"``.

Every method is wrapped, once per method, in a check that runs before the handler (so before
anything reaches the engine or the wrapper): the caller's signature or client certificate
(``Guard.grpc_caller``), then the app's rights; the app is bound to the call in ``GrpcCallers``
for the front, which puts it in the call's context. Refusals are gRPC UNAUTHENTICATED (401
codes), PERMISSION_DENIED (403), RESOURCE_EXHAUSTED (429) or UNAVAILABLE (503: the replay cache
is full, retry shortly), with ``<code>: <message>`` as details and the AIGes code in the
``aiges-code`` trailer.

Open without credentials, for probes and tools: ``grpc.health.v1.Health`` (readiness and the
``aiges.liveness`` service), reflection, OIP ``ServerLive`` / ``ServerReady``, and the cmdserver
commands ``health`` and ``metrics``. cmdserver ``status`` and ``schema`` need any app allowed for
the service; every other cmdserver command (reload, drain, ...) needs an admin app, as do the xsf
ops AILBType, AILoad and AIUnLoad (checked in the xsf front by op name: ``caller.require_admin``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from aiges.errors import AigesError, http_status
from aiges.protocol.xsf_pb2 import Request
from aiges.server.security.app_keys import App
from aiges.server.security.caller import GrpcCallers, admin_refusal, caller_of
from aiges.server.security.guard import Guard, count_refusal

OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
OPEN_PREFIXES = ("/grpc.reflection.",)
TOOLBOX = "/utils.ToolBox/cmdserver"
OPEN_COMMANDS = frozenset({"health", "metrics"})
READ_COMMANDS = frozenset({"status", "schema", ""})
GRPC_STATUS = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
FRONTS = {"/utils.XsfCall/": "xsf", "/aiges.v1.Session/": "stream", "/inference.": "oip", "/utils.ToolBox/": "toolbox"}


def front_of(method: str) -> str:
    return next((front for prefix, front in FRONTS.items() if method.startswith(prefix)), "grpc")


async def refuse(context: grpc.aio.ServicerContext, error: AigesError, front: str) -> NoReturn:
    count_refusal(front, error, context.peer())
    status = GRPC_STATUS.get(http_status(error.code), grpc.StatusCode.UNAUTHENTICATED)
    await context.abort(status, f"{error.code}: {error.message}", trailing_metadata=(("aiges-code", str(error.code)),))
    raise AssertionError("unreachable: abort raises")


def toolbox_command(request: Any) -> str:
    try:
        command = json.loads(request.query or "{}").get("cmd", "") if isinstance(request, Request) else ""
    except (json.JSONDecodeError, AttributeError):
        return ""
    return command if isinstance(command, str) else ""


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, guard: Guard, callers: GrpcCallers) -> None:
        self.guard = guard
        self.callers = callers
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method in OPEN_METHODS or method.startswith(OPEN_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def admit(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> App | None:
        """The calling app, or None for an open cmdserver command; refuses (raises) otherwise."""
        command = None
        if method == TOOLBOX:
            command = toolbox_command(request)
            if command in OPEN_COMMANDS:
                return None
        try:
            app = self.guard.grpc_caller(method, context)
            if command is not None and command not in READ_COMMANDS and not app.admin:
                raise admin_refusal(caller_of(app), f"cmdserver {command!r}")
        except AigesError as exc:
            await refuse(context, exc, front_of(method))
        return app

    def _bind(self, context: grpc.aio.ServicerContext, app: App | None) -> None:
        if app is not None:
            self.callers.bind(context, caller_of(app, context.peer()))

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                self._bind(context, await self.admit(method, request, context))
                try:
                    return await _result(inner(request, context))
                finally:
                    self.callers.unbind(context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
        if handler.stream_unary is not None:
            inner = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                self._bind(context, await self.admit(method, None, context))
                try:
                    return await _result(inner(requests, context))
                finally:
                    self.callers.unbind(context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        streaming = handler.unary_stream if handler.unary_stream is not None else handler.stream_stream
        assert streaming is not None
        inner = streaming

        async def responses(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self._bind(
                context, await self.admit(method, request if handler.unary_stream is not None else None, context)
            )
            try:
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        yield response
                else:
                    await _result(result)
            finally:
                self.callers.unbind(context)

        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(responses, **options)
        return grpc.stream_stream_rpc_method_handler(responses, **options)


async def _result(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
