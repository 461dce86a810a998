"""Frames between the server process and its workers, over one Unix socket pair per worker.

A frame is a small pickled control message plus the payload buffers it refers to, sent side by
side (pickle protocol 5, out-of-band buffers) with one scatter-gather ``sendmsg``: payload bytes
are never copied into or out of a pickle stream.

    u32 meta length | u16 buffer count | u64 length per buffer | meta | buffer 0 | buffer 1 ...

``AsyncChannel`` is the server's end (non-blocking, on the event loop); ``BlockingChannel`` is the
worker's (one thread reads, any thread may send).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct("<IH")
LENGTH = struct.Struct("<Q")
SOCKET_BUFFER = 4 << 20
READ_CHUNK = 256 << 10


def encode(message: Any) -> list[bytes | memoryview]:
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return [HEADER.pack(len(meta), 0) + meta]
    raws = [b.raw() for b in buffers]
    head = HEADER.pack(len(meta), len(raws)) + b"".join(LENGTH.pack(r.nbytes) for r in raws)
    return [head, meta, *raws]


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: (server end, worker end), with buffers large enough for big payloads."""
    server_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in (server_end, worker_end):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    return server_end, worker_end


class AsyncChannel:
    """The event-loop end of a worker socket. ``on_message`` runs for each complete frame;
    ``on_close`` runs once when the peer goes away or the channel is closed."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Any], None],
        on_close: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._on_close = on_close
        self._buf = bytearray(READ_CHUNK)
        self._start = 0
        self._end = 0
        self._pending: deque[memoryview] = deque()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Any) -> None:
        if self._closed:
            raise ConnectionResetError("worker channel is closed")
        pieces = encode(message)
        if self._pending:
            self._pending.extend(memoryview(p).cast("B") for p in pieces)
            return
        total = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)
        try:
            sent = self._sock.sendmsg(pieces)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            raise ConnectionResetError("worker channel is closed") from None
        if sent < total:
            self._queue_unsent(pieces, sent)
            self._loop.add_writer(self._sock.fileno(), self._on_writable)

    def _queue_unsent(self, pieces, sent: int) -> None:
        for piece in pieces:
            view = memoryview(piece).cast("B")
            if sent >= view.nbytes:
                sent -= view.nbytes
                continue
            self._pending.append(view[sent:])
            sent = 0

    def _on_writable(self) -> None:
        while self._pending:
            try:
                sent = self._sock.sendmsg(list(self._pending)[:64])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            while sent:
                head = self._pending[0]
                if sent >= head.nbytes:
                    sent -= head.nbytes
                    self._pending.popleft()
                else:
                    self._pending[0] = head[sent:]
                    sent = 0
        self._loop.remove_writer(self._sock.fileno())

    def _on_readable(self) -> None:
        while True:
            if self._end == len(self._buf):
                self._make_room()
            try:
                with memoryview(self._buf) as view:
                    n = self._sock.recv_into(view[self._end :])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if n == 0:
                self.close()
                return
            self._end += n
            self._parse()
            if self._closed or self._end < len(self._buf):
                return

    def _make_room(self, need: int = 0) -> None:
        """Move unread bytes to the front, and grow when one frame needs more than fits."""
        unread = self._end - self._start
        size = max(len(self._buf), need, READ_CHUNK)
        if self._start == 0 and size == len(self._buf):
            size = len(self._buf) * 2
        if size != len(self._buf):
            fresh = bytearray(size)
            fresh[:unread] = self._buf[self._start : self._end]
            self._buf = fresh
        else:
            self._buf[:unread] = self._buf[self._start : self._end]
        self._start, self._end = 0, unread

    def _parse(self) -> None:
        buf = self._buf
        while not self._closed:
            available = self._end - self._start
            if available < HEADER.size:
                break
            meta_len, count = HEADER.unpack_from(buf, self._start)
            head_len = HEADER.size + LENGTH.size * count
            if available < head_len:
                break
            lengths = [LENGTH.unpack_from(buf, self._start + HEADER.size + LENGTH.size * i)[0] for i in range(count)]
            frame_len = head_len + meta_len + sum(lengths)
            if available < frame_len:
                if frame_len > len(buf) - self._start:
                    self._make_room(frame_len)
                break
            pos = self._start + head_len
            with memoryview(buf) as view:
                meta = view[pos : pos + meta_len]
                pos += meta_len
                buffers = []
                for length in lengths:
                    buffers.append(bytes(view[pos : pos + length]))
                    pos += length
                message = pickle.loads(meta, buffers=buffers)
                meta.release()
            self._start += frame_len
            self._on_message(message)
        if self._start == self._end:
            self._start = self._end = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        fd = self._sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._sock.close()
        self._pending.clear()
        self._on_close()


class BlockingChannel:
    """The worker's end: ``recv`` blocks (with an optional timeout); ``send`` may be called from
    any thread, for results that a wrapper pushes from its own threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.setblocking(True)
        self._timeout: float | None = None
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        pieces = encode(message)
        with self._send_lock:
            total = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)
            sent = self._sock.sendmsg(pieces)
            if sent < total:
                remaining = b"".join(bytes(memoryview(p).cast("B")) for p in pieces)[sent:]
                self._sock.sendall(remaining)

    def recv(self, timeout: float | None = None) -> Any:
        """The next message; raises ``TimeoutError`` when none starts within ``timeout`` seconds
        and ``EOFError`` when the server end is gone."""
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout
        try:
            head = self._sock.recv(HEADER.size, socket.MSG_WAITALL)
        except TimeoutError:
            raise TimeoutError from None
        if len(head) < HEADER.size:
            raise EOFError("server closed the worker channel")
        meta_len, count = HEADER.unpack(head)
        lengths = []
        if count:
            raw = self._exact(LENGTH.size * count)
            lengths = [LENGTH.unpack_from(raw, LENGTH.size * i)[0] for i in range(count)]
        meta = self._exact(meta_len)
        buffers = [self._exact(n) for n in lengths]
        return pickle.loads(meta, buffers=buffers)

    def _exact(self, n: int) -> bytes:
        if n == 0:
            return b""
        if self._timeout is not None:
            self._sock.settimeout(None)
            self._timeout = None
        data = self._sock.recv(n, socket.MSG_WAITALL)
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            chunk = self._sock.recv(n - got, socket.MSG_WAITALL)
            if not chunk:
                raise EOFError("server closed the worker channel")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._sock.close()
