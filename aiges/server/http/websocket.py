"""ASE JSON API sessions over a WebSocket on the route.

Every text frame is an ASE JSON request. The first opens the session (its header, parameter and
payload); later ones write their payload. A frame whose status is 2 (in ``header.status`` or a
payload's ``status``) is the last: the wrapper's remaining output still comes. Every output batch
is pushed as an ASE JSON response as soon as the wrapper produces it; after the one that ends the
output (header.status 2) the server closes the socket. An error is sent as an error response,
then the socket is closed. A client that closes ends the session. Frames from a client that are
not masked close the socket with 1002 (``aiges.server.http.rfc6455``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSMsgType, web

from aiges.engine.context import RequestContext
from aiges.engine.messages import ItemsOutput
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.protocol import ase_json as ase
from aiges.server.http.rfc6455 import StrictWebSocketResponse
from aiges.server.model import Model

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

log = structlog.get_logger("aiges.http")

LAST = 2
OP = "ase-ws"


async def session(front: HttpFront, model: Model, request: web.Request, tag: str) -> web.WebSocketResponse:
    socket = StrictWebSocketResponse(heartbeat=30, max_msg_size=front.max_message)
    await socket.prepare(request)
    front.sockets.add(socket)
    started = time.perf_counter()
    engine = front.engine
    opened: Session | None = None
    pump: asyncio.Task[None] | None = None
    code = 0
    try:
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                if message.type == WSMsgType.BINARY:
                    raise ase.invalid("send ASE JSON requests as text frames")
                continue
            body = ase.parse_body(message.data.encode())
            status = ase.frame_status(body)
            if opened is None:
                frame = ase.items_frame(
                    body, model.name, model.schema, tag, default_status=0 if status is None else status
                )
                opened = await engine.open(RequestContext(tag), frame)
                pump = asyncio.create_task(forward(front, opened, socket))
            else:
                await engine.write(
                    opened,
                    ase.items_frame(
                        body, model.name, model.schema, tag, default_status=1 if status is None else status, first=False
                    ),
                )
            if status == LAST:
                engine.finish(opened)
                assert pump is not None
                await pump
                break
    except AigesError as exc:
        code = exc.code
        front.calls.failed(OP, tag, exc)
        if not socket.closed:
            with contextlib.suppress(ConnectionError):
                await socket.send_json(ase.error_response(exc, tag))
    finally:
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if opened is not None:
            engine.close(opened, reason="websocket closed")
        await socket.close()
        front.calls.done(OP, code, started)
    return socket


async def forward(front: HttpFront, session: Session, socket: web.WebSocketResponse) -> None:
    """Output batches -> response frames; when the output ends (or fails), the socket closes."""
    try:
        while not session.closed:
            output = await front.engine.read(session, None)
            assert isinstance(output, ItemsOutput)
            await socket.send_json(ase.response(output, session.tag))
    except AigesError as exc:
        front.calls.failed(OP, session.tag, exc)
        if not socket.closed:
            with contextlib.suppress(ConnectionError):
                await socket.send_json(ase.error_response(exc, session.tag))
    except ConnectionError:
        log.info("websocket client gone", sid=session.tag)
    await socket.close()
