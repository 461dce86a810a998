"""CORS for the HTTP front (``[http] cors``): off unless origins are named.

With origins named, a request whose ``Origin`` is one of them gets it back in
``Access-Control-Allow-Origin`` (with ``Vary: Origin``), and its preflight (OPTIONS) is answered;
``*`` allows every origin, as the original loader did. Other origins get no CORS headers, so
browsers keep their pages from reading the replies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANY = "*"
ALLOWED_HEADERS = "content-type, inference-header-content-length, authorization, date, digest, x-aiges-nonce"


def parse_origins(text: str) -> frozenset[str]:
    return frozenset(origin.strip().rstrip("/") for origin in text.split(",") if origin.strip())


def cors_middleware(origins: frozenset[str]) -> Middleware:
    def allowed(request: web.Request) -> str | None:
        if ANY in origins:
            return ANY
        origin = request.headers.get("Origin")
        return origin if origin is not None and origin.rstrip("/") in origins else None

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allowed(request)
        if origin is not None and request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600",
                    **({"Vary": "Origin"} if origin != ANY else {}),
                },
            )
        response = await handler(request)
        if origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            if origin != ANY:
                response.headers["Vary"] = "Origin"
        return response

    return cors
