"""The ASE JSON API over HTTP: POST the route for a one-shot call (a WebSocket on the same route is
a session: ``aiges.server.http.websocket``).

The route is the schema's ``meta.route`` (``/<version>/private/<serviceId>`` by default), known
once a worker has loaded the wrapper, so one catch-all handler matches it per request, against
every service's route (with two services on one route, the first listed serves it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from aiges.engine.messages import ItemsOutput
from aiges.errors import AigesError
from aiges.protocol import ase_json as ase
from aiges.schema import route_of
from aiges.server.model import Model, ModelLoading
from aiges.server.request_context import http_context
from aiges.server.security.caller import http_caller
from aiges.server.service import Service
from aiges.server.services import Services

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

Session = Callable[["HttpFront", Service, Model, web.Request, str], Awaitable[web.StreamResponse]]


def model_route(model: Model) -> str:
    if model.schema:
        return str(model.schema["meta"]["route"])
    return route_of(model.name, model.version, None)


def by_route(services: Services, path: str) -> tuple[Service, Model] | list[str]:
    """The service whose route is ``path``, and its model; else every route served (ModelLoading
    while a service that may have it still loads)."""
    routes, loading = [], False
    for service in services:
        model = service.models.get()
        if model is None:
            loading = True
            continue
        route = model_route(model)
        if route == path:
            return service, model
        routes.append(route)
    if loading:
        raise ModelLoading()
    return routes


def add_routes(router: web.UrlDispatcher, front: HttpFront, session: Session) -> None:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        from aiges.server.http.front import error_response

        tag = front.handles.next()
        try:
            found = by_route(front.services, request.path)
            if not isinstance(found, list):
                found = front.services.check(found[0], http_caller(request)), found[1]
        except AigesError as exc:
            return error_response(exc, ase.error_response(exc, tag))
        if isinstance(found, list):
            where = " and ".join(found) if found else "no route yet"
            return web.json_response(
                {
                    "error": f"no route {request.path}; the ASE JSON API is at {where}, "
                    "the API is described at /openapi.json"
                },
                status=404,
            )
        service, model = found
        if request.method == "POST":
            return await once(front, service, model, request, tag)
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await session(front, service, model, request, tag)
        return web.json_response(
            {"error": f"{request.method} {model_route(model)}: POST a call, or open a WebSocket"},
            status=405,
            headers={"Allow": "GET, POST"},
        )

    router.add_route("*", "/{tail:.*}", dispatch)


async def once(front: HttpFront, service: Service, model: Model, request: web.Request, tag: str) -> web.Response:

    async def body() -> web.Response:
        frame = ase.items_frame(ase.parse_body(await request.read()), model.name, model.schema, tag)
        output = await service.once(http_context(tag, request), frame)
        assert isinstance(output, ItemsOutput)
        return web.json_response(ase.response(output, tag))

    return await front.calls.run("ase", tag, body(), ase_error, tag, service=service.label)


def ase_error(error: AigesError, tag: str) -> web.Response:
    from aiges.server.http.front import error_response

    return error_response(error, ase.error_response(error, tag))
