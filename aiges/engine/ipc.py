"""Frames between the server process and its workers, over one Unix socket pair per worker.

A frame is a small pickled control message plus the payload buffers it refers to (pickle
protocol 5, out-of-band buffers): payload bytes are never copied into or out of a pickle stream.
A buffer of at least ``SHM_MIN`` bytes is written into the shared-memory ring of that direction
and only its position is sent (``aiges.engine.shm``); smaller ones follow the meta in the frame,
sent with scatter-gather ``sendmsg``.

    u32 meta length | u16 buffer count | (u8 where, u64 length, u64 ring position) per buffer
    | meta | inline buffers ...

Both ends read in bulk: one ``recv`` takes every frame that has arrived, and the server end
sends all the frames queued during one event-loop pass with one ``sendmsg``; the pool holds frames
back while a worker is busy (``WorkerPool._send``). Waking the other process is the dearest part
of a message on a busy machine, so under load many calls share one wake-up.

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

from aiges.engine.packing import pack, unpack
from aiges.engine.shm import SHM_MIN, ShmRing

HEADER = struct.Struct("<IH")
BUFFER = struct.Struct("<BQQ")
INLINE, IN_RING = 0, 1
SOCKET_BUFFER = 4 << 20
READ_CHUNK = 256 << 10
MAX_IOV = 512
OUT_OF_BAND_MIN = 4096


def encode(message: Any, ring: ShmRing | None = None, wait_for_ring: bool = False) -> list[bytes | memoryview] | None:
    """The pieces of one frame. With ``wait_for_ring``, None when a large buffer does not fit in
    the ring only because the reader has not caught up (the caller retries after its reply)."""
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(pack(message), protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return [HEADER.pack(len(meta), 0) + meta]
    descriptors = []
    inline = []
    mark = ring.produced if ring is not None else 0
    for buffer in buffers:
        raw = buffer.raw()
        placed = ring.put(raw) if ring is not None and raw.nbytes >= SHM_MIN else None
        if (
            placed is None
            and wait_for_ring
            and ring is not None
            and raw.nbytes >= SHM_MIN
            and ring.busy
            and raw.nbytes <= ring.size
        ):
            ring.produced = mark
            return None
        if placed is None:
            descriptors.append(BUFFER.pack(INLINE, raw.nbytes, 0))
            inline.append(raw)
        else:
            descriptors.append(BUFFER.pack(IN_RING, raw.nbytes, placed[0]))
    return [HEADER.pack(len(meta), len(buffers)) + b"".join(descriptors), meta, *inline]


def out_of_band(data: bytes) -> bytes | pickle.PickleBuffer:
    """Mark a payload to travel beside the pickled message (in the ring when large) rather than
    inside it; the receiver gets a bytes-like object in its place."""
    return pickle.PickleBuffer(data) if len(data) >= OUT_OF_BAND_MIN else data


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: (server end, worker end), with buffers large enough for big payloads."""
    server_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in (server_end, worker_end):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    return server_end, worker_end


def _nbytes(piece: bytes | memoryview) -> int:
    return len(piece) if isinstance(piece, bytes) else piece.nbytes


class FrameBuffer:
    """Bytes read from a socket, cut into decoded messages. Room is made on demand: unread bytes
    move to the front, and the buffer grows when one frame needs more than fits.

    Ring buffers arrive as views of the ring (``materialize`` False: the reader releases them
    with ``release`` when done) or as bytes copied out and released at once."""

    def __init__(self, ring: ShmRing | None = None, materialize: bool = True) -> None:
        self.buf = bytearray(READ_CHUNK)
        self.start = 0
        self.end = 0
        self.need = 0
        self.ring = ring
        self.materialize = materialize
        self.ring_ends: deque[int | None] = deque()

    def room(self) -> memoryview:
        """Where the next ``recv_into`` should write."""
        if self.end == len(self.buf) or (self.need and self.start + self.need > len(self.buf)):
            unread = self.end - self.start
            size = max(len(self.buf), self.need, READ_CHUNK)
            if self.start == 0 and unread == len(self.buf) and size == len(self.buf):
                size *= 2
            if size != len(self.buf):
                fresh = bytearray(size)
                fresh[:unread] = self.buf[self.start : self.end]
                self.buf = fresh
            else:
                self.buf[:unread] = self.buf[self.start : self.end]
            self.start, self.end = 0, unread
        return memoryview(self.buf)[self.end :]

    def messages(self) -> list[Any]:
        """Every complete message in the buffer, in order."""
        out = []
        buf = self.buf
        while True:
            available = self.end - self.start
            if available < HEADER.size:
                break
            meta_len, count = HEADER.unpack_from(buf, self.start)
            head_len = HEADER.size + BUFFER.size * count
            if available < head_len:
                break
            base = self.start + HEADER.size
            descriptors = [BUFFER.unpack_from(buf, base + BUFFER.size * i) for i in range(count)]
            frame_len = head_len + meta_len + sum(length for where, length, _ in descriptors if where == INLINE)
            if available < frame_len:
                self.need = frame_len
                break
            self.need = 0
            pos = self.start + head_len
            ring_end: int | None = None
            with memoryview(buf) as view:
                meta = view[pos : pos + meta_len]
                pos += meta_len
                buffers: list[bytes | memoryview] = []
                for where, length, position in descriptors:
                    if where == INLINE:
                        buffers.append(bytes(view[pos : pos + length]))
                        pos += length
                    elif self.materialize:
                        assert self.ring is not None
                        with self.ring.get(position, length) as shared:
                            buffers.append(bytes(shared))
                        self.ring.release(position + length)
                    else:
                        assert self.ring is not None
                        buffers.append(self.ring.get(position, length))
                        ring_end = position + length
                out.append(unpack(pickle.loads(meta, buffers=buffers)))
                meta.release()
            if not self.materialize:
                self.ring_ends.append(ring_end)
            self.start += frame_len
        if self.start == self.end:
            self.start = self.end = 0
        return out

    def release(self) -> None:
        """The oldest message handed out is done with: its ring buffers may be reused."""
        end = self.ring_ends.popleft()
        if end is not None and self.ring is not None:
            self.ring.release(end)


class AsyncChannel:
    """The event-loop end of a worker socket. ``on_message`` runs for each complete frame;
    ``on_close`` runs once when the peer goes away or the channel is closed."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Any], None],
        on_close: Callable[[], None],
        send_ring: ShmRing | None = None,
        recv_ring: ShmRing | None = None,
    ) -> None:
        self._sock = sock
        self._send_ring = send_ring
        self._sock.setblocking(False)
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._on_close = on_close
        self._frames = FrameBuffer(recv_ring)
        self._outbox: deque[Any] = deque()
        self._encoded_tail = True
        self._unsent: deque[memoryview] = deque()
        self._flush_scheduled = False
        self._closed = False
        self._loop.add_reader(self._fd, self._on_readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Any, hold: bool = False) -> None:
        """Queue a frame; frames queued during one event-loop pass leave in one ``sendmsg``.
        A held frame waits for the next ``flush``."""
        if self._closed:
            raise ConnectionResetError("worker channel is closed")
        frame = None if self._outbox and not self._encoded_tail else encode(message, self._send_ring, True)
        if frame is None:
            self._outbox.append(message)
            self._encoded_tail = False
        else:
            self._outbox.append(frame)
            self._encoded_tail = True
        if not hold:
            self.flush()

    def flush(self) -> None:
        """Send what is queued, at the end of this event-loop pass."""
        if self._outbox and not self._flush_scheduled and not self._unsent:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued frames. A frame is encoded (its large buffers copied into the ring)
        when it is queued, while its bytes are still in cache; one whose buffer waits for ring
        space stays queued as a message, with those behind it, until the worker answers (it frees
        the ring as it reads)."""
        self._flush_scheduled = False
        if self._closed or not self._outbox:
            return
        pieces: list[bytes | memoryview] = []
        while self._outbox:
            head = self._outbox[0]
            frame = head if isinstance(head, list) else encode(head, self._send_ring, wait_for_ring=True)
            if frame is None:
                break
            self._outbox.popleft()
            pieces.extend(frame)
        if not self._outbox:
            self._encoded_tail = True
        for start in range(0, len(pieces), MAX_IOV):
            batch = pieces[start : start + MAX_IOV]
            try:
                sent = self._sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent < sum(_nbytes(p) for p in batch):
                self._keep_unsent(batch, sent)
                self._keep_unsent(pieces[start + MAX_IOV :], 0)
                self._loop.add_writer(self._fd, self._on_writable)
                return

    def _keep_unsent(self, pieces: list[bytes | memoryview], sent: int) -> None:
        for piece in pieces:
            view = memoryview(piece).cast("B")
            if sent >= view.nbytes:
                sent -= view.nbytes
                continue
            self._unsent.append(view[sent:])
            sent = 0

    def _on_writable(self) -> None:
        while self._unsent:
            try:
                sent = self._sock.sendmsg(list(self._unsent)[:MAX_IOV])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            while sent:
                head = self._unsent[0]
                if sent >= head.nbytes:
                    sent -= head.nbytes
                    self._unsent.popleft()
                else:
                    self._unsent[0] = head[sent:]
                    sent = 0
        self._loop.remove_writer(self._fd)
        if self._outbox and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _on_readable(self) -> None:
        while not self._closed:
            room = self._frames.room()
            try:
                n = self._sock.recv_into(room)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            finally:
                room.release()
            if n == 0:
                self.close()
                return
            self._frames.end += n
            for message in self._frames.messages():
                self._on_message(message)
            if self._outbox:
                self.flush()
            if self._frames.end < len(self._frames.buf):
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._sock.close()
        self._unsent.clear()
        self._outbox.clear()
        self._on_close()


class BlockingChannel:
    """The worker's end. ``recv`` blocks (with an optional timeout) and returns every message that
    has arrived; ``send`` may be called from any thread, for results a wrapper pushes from its own
    threads."""

    def __init__(self, sock: socket.socket, send_ring: ShmRing | None = None, recv_ring: ShmRing | None = None) -> None:
        self._sock = sock
        self._sock.setblocking(True)
        self._timeout: float | None = None
        self._frames = FrameBuffer(recv_ring, materialize=False)
        self._send_ring = send_ring
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        self.send_all([message])

    def send_all(self, messages: list[Any]) -> None:
        with self._send_lock:
            pieces = [piece for message in messages for piece in encode(message, self._send_ring) or ()]
            for start in range(0, len(pieces), MAX_IOV):
                batch = pieces[start : start + MAX_IOV]
                sent = self._sock.sendmsg(batch)
                total = sum(_nbytes(p) for p in batch)
                if sent < total:
                    self._sock.sendall(b"".join(bytes(memoryview(p).cast("B")) for p in batch)[sent:])

    def done(self) -> None:
        """The oldest received message is handled: buffers it had in the ring may be reused."""
        self._frames.release()

    def recv(self, timeout: float | None = None) -> list[Any]:
        """The messages that have arrived, at least one; call ``done`` after handling each.
        Raises ``TimeoutError`` when none comes within ``timeout`` seconds and ``EOFError``
        when the server end is gone."""
        wait = timeout
        while True:
            messages = self._frames.messages()
            if messages:
                return messages
            if wait != self._timeout:
                self._sock.settimeout(wait)
                self._timeout = wait
            room = self._frames.room()
            try:
                n = self._sock.recv_into(room)
            except TimeoutError:
                raise TimeoutError from None
            finally:
                room.release()
            if n == 0:
                raise EOFError("server closed the worker channel")
            self._frames.end += n
            wait = None

    def close(self) -> None:
        self._sock.close()
