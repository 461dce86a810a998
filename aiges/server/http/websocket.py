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

from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import WSMsgType, web

from aiges.engine.messages import ItemsOutput, Output
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.protocol import ase_json as ase
from aiges.server.http.rfc6455 import StrictWebSocketResponse
from aiges.server.model import Model
from aiges.server.request_context import http_context
from aiges.server.service import Service
from aiges.server.session_bridge import Decoded

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

log = structlog.get_logger("aiges.http")

LAST = 2
OP = "ase-ws"


class AseSocketCodec:
    """ASE JSON requests in, ASE JSON responses out, for one session of ``model``."""

    half_close_finishes = False  # a client that closes the socket is gone

    def __init__(self, model: Model, tag: str) -> None:
        self.model = model
        self.tag = tag

    def _frame(self, body: dict[str, Any], default: int, first: bool) -> Decoded:
        status = ase.frame_status(body)
        status = default if status is None else status
        frame = ase.items_frame(body, self.model.name, self.model.schema, self.tag, default_status=status, first=first)
        return Decoded(frame, last=status == LAST)

    def first(self, message: dict[str, Any]) -> Decoded:
        return self._frame(message, 0, first=True)

    def next(self, message: dict[str, Any]) -> Decoded:
        return self._frame(message, 1, first=False)

    def output(self, session: Session, output: Output) -> dict[str, Any]:
        assert isinstance(output, ItemsOutput)
        return ase.response(output, session.tag)

    def error(self, session: Session | None, error: AigesError) -> dict[str, Any]:
        return ase.error_response(error, self.tag)


async def requests(socket: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The client's text frames, each an ASE JSON request (a binary frame is a bad request)."""
    async for message in socket:
        if message.type == WSMsgType.TEXT:
            yield ase.parse_body(message.data.encode())
        elif message.type == WSMsgType.BINARY:
            raise ase.invalid("send ASE JSON requests as text frames")


async def session(
    front: HttpFront, service: Service, model: Model, request: web.Request, tag: str
) -> web.WebSocketResponse:
    """A WebSocket session of ``service``: the session bridge between the client's frames and the responses."""
    socket = StrictWebSocketResponse(heartbeat=30, max_msg_size=front.max_message)
    await socket.prepare(request)
    front.sockets.add(socket)
    make_context = partial(http_context, tag, request)
    replies = front.bridge.stream(make_context, AseSocketCodec(model, tag), requests(socket), target=service)
    try:
        async with aclosing(replies):
            async for reply in replies:
                await socket.send_json(reply)
    except ConnectionError:
        log.info("websocket client gone", sid=tag)
    finally:
        await socket.close()
    return socket
