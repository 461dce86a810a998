"""The ASE JSON API over HTTP: POST the route for a one-shot call, open a WebSocket on it for a
session.

The route is the schema's ``meta.route`` (``/<version>/private/<serviceId>`` by default), known
once a worker has loaded the wrapper, so one catch-all handler matches it per request.

WebSocket session: every text frame is an ASE JSON request. The first opens the session (its
header, parameter and payload); later ones write their payload. A frame whose status is 2 (in
``header.status`` or a payload's ``status``) is the last: the wrapper's remaining output still
comes. Every output batch is pushed as an ASE JSON response as soon as the wrapper produces it;
after the one that ends the output (header.status 2) the server closes the socket. An error is
sent as an error response, then the socket is closed. A client that closes ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSMsgType, web

from aiges.errors import AigesError, http_status
from aiges.protocol import ase
from aiges.protocol.v2_pb2 import LoaderInput
from aiges.schema import route_of
from aiges.server.calls import SessionCall, call_once
from aiges.server.http.rfc6455 import StrictWebSocketResponse

if TYPE_CHECKING:
    from aiges.protocol.oip import Model
    from aiges.server.http.app import HttpFront

log = structlog.get_logger("aiges.http")

LAST = 2


def model_route(model: Model) -> str:
    if model.schema:
        return model.schema["meta"]["route"]
    return route_of(model.name, model.version, None)


def add_routes(router: web.UrlDispatcher, front: HttpFront) -> None:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        tag = front.handles.next()
        try:
            model = front.current_model()
        except AigesError as exc:
            return web.json_response(ase.error_response(exc, tag), status=503)
        route = model_route(model)
        if request.path != route:
            return web.json_response({"error": f"no route {request.path}; the ASE JSON API is at {route}, "
                                               "the API is described at /openapi.json"}, status=404)
        if request.method == "POST":
            return await once(front, model, request, tag)
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await session(front, model, request, tag)
        return web.json_response({"error": f"{request.method} {route}: POST a call, or open a WebSocket"},
                                 status=405, headers={"Allow": "GET, POST"})

    router.add_route("*", "/{tail:.*}", dispatch)


async def once(front: HttpFront, model: Model, request: web.Request, tag: str) -> web.Response:
    code = 0
    try:
        body = ase.parse_body(await request.read())
        message = ase.loader_input(body, model.name, model.schema, tag)
        output = await call_once(front.engine, tag, message)
        return web.json_response(ase.response(output, tag))
    except AigesError as exc:
        code = exc.code
        log.warning("call failed", op="ase", sid=tag, code=exc.code, error=exc.message)
        return web.json_response(ase.error_response(exc, tag), status=http_status(exc.code))
    finally:
        front.counts.count("ase", code)


async def session(front: HttpFront, model: Model, request: web.Request, tag: str) -> web.WebSocketResponse:
    socket = StrictWebSocketResponse(heartbeat=30, max_msg_size=front.max_message)
    await socket.prepare(request)
    front.sockets.add(socket)
    call: SessionCall | None = None
    pump: asyncio.Task | None = None
    code = 0
    try:
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                if message.type == WSMsgType.BINARY:
                    raise ase.invalid("send ASE JSON requests as text frames")
                continue
            body = ase.parse_body(message.data.encode())
            status = ase.frame_status(body)
            if call is None:
                call = await SessionCall.open(front.engine, tag, ase.loader_input(
                    body, model.name, model.schema, tag, state=LoaderInput.STREAM,
                    default_status=0 if status is None else status))
                pump = asyncio.create_task(forward(call, socket))
            else:
                await call.write(ase.loader_input(body, model.name, model.schema, tag, state=LoaderInput.STREAM,
                                                  default_status=1 if status is None else status, first=False))
            if status == LAST:
                call.finish()
                await pump
                break
    except AigesError as exc:
        code = exc.code
        log.warning("session failed", op="ase-ws", sid=tag, code=exc.code, error=exc.message)
        if not socket.closed:
            with contextlib.suppress(ConnectionError):
                await socket.send_json(ase.error_response(exc, tag))
    finally:
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if call is not None:
            call.close("websocket closed")
        await socket.close()
        front.counts.count("ase-ws", code)
    return socket


async def forward(call: SessionCall, socket: web.WebSocketResponse) -> None:
    """Output batches -> response frames; when the output ends (or fails), the socket closes."""
    try:
        async for output in call.outputs():
            await socket.send_json(ase.response(output, call.tag))
    except AigesError as exc:
        log.warning("session failed", op="ase-ws", sid=call.tag, code=exc.code, error=exc.message)
        if not socket.closed:
            with contextlib.suppress(ConnectionError):
                await socket.send_json(ase.error_response(exc, call.tag))
    except ConnectionError:
        log.info("websocket client gone", sid=call.tag)
    await socket.close()
