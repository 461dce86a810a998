"""A WebSocket response that holds clients to RFC 6455 §5.1: every frame a client sends must be
masked, and the server closes the connection (1002, protocol error) on one that is not.

aiohttp's frame reader serves both ends of a connection and does not check the mask bit, so
this wraps it: it follows the frame headers in the bytes going in (skipping the payloads, which
the reader itself unmasks) and fails the socket on the first unmasked frame. It reaches into two
aiohttp internals, the protocol's payload parser and the response's message queue; the pinned
aiohttp version is exercised by ``tests/integration/test_http.py``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError

MASK_BIT = 0x80


def header_size(header: bytearray) -> int | None:
    """The size of a frame header from its first two bytes (None before they are in)."""
    if len(header) < 2:
        return None
    length = header[1] & 0x7F
    extended = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extended + (4 if header[1] & MASK_BIT else 0)


def payload_size(header: bytearray) -> int:
    length = header[1] & 0x7F
    if length == 126:
        return int.from_bytes(header[2:4], "big")
    if length == 127:
        return int.from_bytes(header[2:10], "big")
    return length


class MaskedFramesOnly:
    """Stands in front of aiohttp's WebSocketReader as the protocol's payload parser."""

    def __init__(self, reader: Any, queue: Any) -> None:
        self.reader = reader
        self.queue = queue
        self._header = bytearray()
        self._skip = 0
        self._failed = False

    def feed_eof(self) -> None:
        self.reader.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if not self._failed and not self._frames_masked(memoryview(data)):
            self._failed = True
            self.queue.set_exception(
                WebSocketError(
                    WSCloseCode.PROTOCOL_ERROR, "a frame from the client is not masked (RFC 6455 section 5.1)"
                )
            )
        if self._failed:
            return True, b""
        done: tuple[bool, bytes] = self.reader.feed_data(data)
        return done

    def _frames_masked(self, data: memoryview) -> bool:
        position = 0
        while position < len(data):
            if self._skip:
                taken = min(self._skip, len(data) - position)
                self._skip -= taken
                position += taken
                continue
            self._header.append(data[position])
            position += 1
            size = header_size(self._header)
            if size is None or len(self._header) < size:
                continue
            if not self._header[1] & MASK_BIT:
                return False
            self._skip = payload_size(self._header)
            self._header.clear()
        return True


class StrictWebSocketResponse(web.WebSocketResponse):
    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        request.protocol._payload_parser = MaskedFramesOnly(request.protocol._payload_parser, self._reader)
