"""The HTTP front on ``[http] listen``: one aiohttp application in the server's event loop, calling
the same engine as the gRPC fronts.

    POST <meta.route>          ASE JSON API, one-shot            (aiges.server.http.ase)
    GET  <meta.route>          ASE JSON API, a WebSocket session (aiges.server.http.websocket)
    /v2/...                    Open Inference Protocol REST      (aiges.server.http.oip_rest)
    /v2/repository/...         its model repository extension    (aiges.server.http.oip_rest)
    GET  /openapi.json, /docs  the API, described (Swagger UI)   (aiges.server.http.docs)
    GET  /, /console/...       the web console                   (aiges.server.http.console)

With several services each has its route (its schema's ``meta.route``, ``/v1/private/<serviceId>``
by default), its OIP model, and its console page and description (``?service=NAME``).

Every handler runs its request through the front's ``FrontCalls`` (``aiges.server.observe``):
one place that times, counts and logs requests and turns an AigesError into the route's
error form.

aiohttp, because one well-kept library gives both an asyncio HTTP/1.1 server and WebSockets that
run in the loop the gRPC server and the engine already use, with no ASGI layer between a request
and the engine (uvicorn + Starlette would add both a second library and that layer).
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Middleware

from aiges.errors import AigesError, ErrorCode, http_status
from aiges.protocol.handle import HandleGenerator
from aiges.server.http import ase, console, docs, oip_rest, websocket
from aiges.server.model import Model, ModelNotFound
from aiges.server.observe import FrontCalls
from aiges.server.retry_hints import http_retry_after
from aiges.server.security.cors import cors_middleware, parse_origins
from aiges.server.service import Service
from aiges.server.services import Services
from aiges.server.session_bridge import SessionBridge

if TYPE_CHECKING:
    from aiges.server.repository import Repository

log = structlog.get_logger("aiges.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SHUTDOWN_S = 2.0  # for requests still running when the listener closes; the drain came before


def error_response(error: AigesError, body: dict[str, object] | None = None) -> web.Response:
    """An AigesError over HTTP: its code's status (503 with Retry-After for the retryable ones),
    the body given, or ``{"error": "<code>: <message>"}``."""
    status = http_status(error.code)
    retry_after = http_retry_after(error) or ("1" if status == 503 else None)
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(
        body if body is not None else {"error": f"{error.code}: {error.message}"}, status=status, headers=headers
    )


class HttpFront:
    """What the HTTP handlers share: the services, handles and readiness."""

    def __init__(
        self,
        services: Services,
        handles: HandleGenerator,
        ready: Callable[[], bool],
        *,
        model_ready: Callable[[Service], bool] | None = None,
        repository: Repository | None = None,
        cors: str = "",
        max_body_mb: int = 4,
        status: Callable[[], Mapping[str, Any]] | None = None,
        middlewares: Sequence[Middleware] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ready``: the server's readiness; ``model_ready``: a service's (default: the
        server's); ``repository``: the services loaded while serving (None: no
        ``/v2/repository``); ``cors``: ``[http] cors``; ``status``: the server's state
        (``App.snapshot``), for the console's live panel; ``middlewares``: run after CORS, before
        the handlers (the caller check in ``[auth] mode = "hmac"``); ``ssl_context``: TLS ([tls])."""
        self.services = services
        self.handles = handles
        self.ready = ready
        self.model_ready = model_ready or (lambda service: ready())
        self.repository = repository
        self.ssl_context = ssl_context
        self.max_message = max_body_mb << 20
        self.calls = FrontCalls("http")
        self.bridge = SessionBridge(services, self.calls, websocket.OP)
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        origins = parse_origins(cors)
        cross_origin = [cors_middleware(origins)] if origins else []  # off: nothing on a request's path
        self.app = web.Application(
            client_max_size=max_body_mb << 20,
            middlewares=[*cross_origin, *middlewares, self._errors],
        )
        oip_rest.add_routes(self.app.router, self)
        docs.add_routes(self.app.router, self)
        console.add_routes(self.app.router, self, status)
        ase.add_routes(self.app.router, self, websocket.session)
        self._runner: web.AppRunner | None = None
        self.address = ""
        """HOST:PORT bound, once started."""

    def pick(self, request: web.Request) -> tuple[Service, Model]:
        """The service a page or description is for (``?service=NAME``; default: the first) and
        its model; ModelLoading (503, Retry-After) while its workers are still starting."""
        service = self.pick_service(request)
        return service, service.models.current()

    def pick_service(self, request: web.Request) -> Service:
        name = request.query.get("service", "")
        service = self.services.get(name) if name else next(iter(self.services), None)
        if service is None:
            served = ", ".join(self.services.names()) or "none"
            raise AigesError(ErrorCode.UNKNOWN_SERVICE, f"no service {name!r} here; this server serves {served}")
        return service

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """An unknown model is 404; an AigesError a handler lets through, its code's status."""
        try:
            response: web.StreamResponse = await handler(request)
        except ModelNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except AigesError as exc:
            return error_response(exc)
        return response

    async def start(self, listen: str, reuse_port: bool = False) -> str:
        """Listen on HOST:PORT (port 0 picks one); returns the address bound. ``reuse_port``:
        share the port with other aiges processes (``[svcName] reuseport``)."""
        host, _, port = listen.rpartition(":")
        # a client that hangs up cancels its handler: the call is withdrawn or its wrapper told
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            host.strip("[]") or "0.0.0.0",
            int(port),
            shutdown_timeout=SHUTDOWN_S,
            reuse_port=reuse_port or None,
            ssl_context=self.ssl_context,
        )
        await site.start()
        bound = self._runner.addresses[0]
        address = f"{host.strip('[]') or '0.0.0.0'}:{bound[1]}"
        log.info("http listening", address=address, tls=self.ssl_context is not None)
        self.address = address
        return address

    async def stop(self) -> None:
        """Close the WebSockets still open (1001, going away), then the listener."""
        for socket in list(self.sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
