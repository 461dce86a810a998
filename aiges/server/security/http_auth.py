"""Caller checks on the HTTP port: an aiohttp middleware in ``[auth] mode = "hmac"``.

Every request but the open ones must be signed (``Guard.http_caller``): the ASE JSON route and
its WebSocket upgrade (a WebSocket is an HTTP GET first, checked before the upgrade), and all of
``/v2`` (OIP REST) except its health routes. Refused: 401 (credentials) or 403 (rights) with the
AIGes code in the body, in the route's own error form; the request reaches nothing behind the
check.

Open without credentials: ``/v2/health/live`` and ``/v2/health/ready`` (probes), the API's
description (``/openapi.json``, ``/docs``), the web console's page, scripts and form (``/``,
``/console``, ``/console/static/...``, ``/console/service.json``: what the description says too)
and CORS preflights (browsers send no credentials with them). The console's live panel
(``/console/status.json``, like cmdserver ``status``), its ``/console/snippets`` and every call it
makes need credentials like any other request. Prometheus' ``/metrics`` is on its own port
([metrics]) and always open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from aiges.errors import AigesError, http_status
from aiges.server.security.caller import CALLER_KEY, caller_of
from aiges.server.security.guard import Guard, count_refusal

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset(
    {
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.json",
        "/docs",
        "/",
        "/console",
        "/console/",
        "/console/service.json",
    }
)
OPEN_PREFIXES: tuple[str, ...] = ("/console/static/",)
"""The console's and the docs page's scripts, styles and vendored libraries."""


def refusal(request: web.Request, error: AigesError) -> web.Response:
    """A refusal in the route's error form: OIP REST ``{"error"}``, else the ASE JSON one."""
    if request.path.startswith("/v2"):
        body: dict[str, object] = {"error": f"{error.code}: {error.message}"}
    else:
        body = {"header": {"code": error.code, "message": error.message, "sid": ""}, "payload": None}
    status = http_status(error.code)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'hmac-sha256 headers="host date request-line"'
    elif status == 503:
        headers["Retry-After"] = "1"
    return web.json_response(body, status=status, headers=headers or None)


def auth_middleware(guard: Guard) -> Middleware:
    @web.middleware
    async def check_caller(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if request.method == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await handler(request)
        try:
            app = await guard.http_caller(request)
        except AigesError as exc:
            count_refusal("http", exc, request.remote or "")
            return refusal(request, exc)
        request[CALLER_KEY] = caller_of(app, request.remote or "")
        return await handler(request)

    return check_caller
