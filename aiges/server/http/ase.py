"""The ASE JSON API over HTTP: POST the route for a one-shot call (a WebSocket on the same route is
a session: ``aiges.server.http.websocket``).

The route is the schema's ``meta.route`` (``/<version>/private/<serviceId>`` by default), known
once a worker has loaded the wrapper, so one catch-all handler matches it per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from aiges.engine.messages import ItemsOutput
from aiges.errors import AigesError
from aiges.protocol import ase_json as ase
from aiges.schema import route_of
from aiges.server.model import Model
from aiges.server.request_context import http_context

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

Session = Callable[["HttpFront", Model, web.Request, str], Awaitable[web.StreamResponse]]


def model_route(model: Model) -> str:
    if model.schema:
        return str(model.schema["meta"]["route"])
    return route_of(model.name, model.version, None)


def add_routes(router: web.UrlDispatcher, front: HttpFront, session: Session) -> None:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        from aiges.server.http.front import error_response

        tag = front.handles.next()
        try:
            model = front.current_model()
        except AigesError as exc:
            return error_response(exc, ase.error_response(exc, tag))
        route = model_route(model)
        if request.path != route:
            return web.json_response(
                {
                    "error": f"no route {request.path}; the ASE JSON API is at {route}, "
                    "the API is described at /openapi.json"
                },
                status=404,
            )
        if request.method == "POST":
            return await once(front, model, request, tag)
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await session(front, model, request, tag)
        return web.json_response(
            {"error": f"{request.method} {route}: POST a call, or open a WebSocket"},
            status=405,
            headers={"Allow": "GET, POST"},
        )

    router.add_route("*", "/{tail:.*}", dispatch)


async def once(front: HttpFront, model: Model, request: web.Request, tag: str) -> web.Response:

    async def body() -> web.Response:
        frame = ase.items_frame(ase.parse_body(await request.read()), model.name, model.schema, tag)
        output = await front.engine.once(http_context(tag, request), frame)
        assert isinstance(output, ItemsOutput)
        return web.json_response(ase.response(output, tag))

    return await front.calls.run("ase", tag, body(), ase_error, tag)


def ase_error(error: AigesError, tag: str) -> web.Response:
    from aiges.server.http.front import error_response

    return error_response(error, ase.error_response(error, tag))
