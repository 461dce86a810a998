"""``/openapi.json`` and ``/docs``: the API described, from the wrapper's declarations.

``/openapi.json?service=NAME`` describes that service (default: the first). ``/docs`` is Swagger
UI on ``/openapi.json``, from the vendored ``swagger-ui-dist`` (its version
and licence in ``static/vendor/README.md``): nothing is fetched from elsewhere, so it also works
inside clusters with no way out. The web console (``aiges.server.http.console``) is at ``/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aiges.schema import route_of
from aiges.schema.openapi import build_openapi

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront
    from aiges.server.model import Model

PAGE = Path(__file__).parent / "static" / "docs" / "index.html"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)
"""This server only (Swagger UI styles some elements inline)."""


def schema_of(model: Model) -> dict[str, Any]:
    """The wrapper's schema; a bare one for wrappers that declare nothing (function style, C)."""
    if model.schema:
        return dict(model.schema)
    meta = {"serviceId": model.name, "version": model.version, "route": route_of(model.name, model.version, None)}
    return {"meta": meta, "schemainput": {"type": "object"}, "schemaoutput": {"type": "object"}}


def add_routes(router: web.UrlDispatcher, front: HttpFront) -> None:
    page = PAGE.read_text(encoding="utf-8")

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(build_openapi(schema_of(front.pick(request)[1])))

    async def docs(request: web.Request) -> web.Response:
        return web.Response(
            text=page, content_type="text/html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
        )

    router.add_get("/openapi.json", openapi)
    router.add_get("/docs", docs)
