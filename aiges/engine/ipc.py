"""Frames between the server process and its workers, over one Unix socket pair per worker.

A frame is a small pickled control message plus the payload buffers it refers to (pickle
protocol 5, out-of-band buffers): payload bytes are never copied into or out of a pickle stream.
Where a buffer travels depends on its size (``aiges.engine.shm``):

    under SHM_MIN (64 KiB)    inline: after the meta in the frame, sent with scatter-gather ``sendmsg``
    up to MEMFD_MIN (4 MiB)   into the shared-memory ring of that direction; only its position is sent
    MEMFD_MIN and up          in a memfd of its own, passed with the frame (``SCM_RIGHTS``)

    u32 meta length | u16 buffer count | (u8 where, u64 length, u64 ring position) per buffer
    | meta | inline buffers ...

A buffer may be made of pieces (a ``Spliced`` output: ``packing.Gather``): they are written one
after the other wherever it travels, and the receiver gets one buffer. Descriptors travel in
the order of the frames that use them, attached to the ``sendmsg`` that carries the first of
those frames' bytes or an earlier one; the receiver keeps them in a queue and each memfd buffer
takes the next. The sender closes its descriptor as soon as it is sent.

Both ends read in bulk: one ``recv`` takes every frame that has arrived, and the server end
sends all the frames queued during one event-loop pass with one ``sendmsg``; the pool holds frames
back while a worker is busy (``WorkerPool._send``). Waking the other process is the dearest part
of a message on a busy machine, so under load many calls share one wake-up.

``AsyncChannel`` is the server's end (non-blocking, on the event loop); ``BlockingChannel`` is the
worker's (one thread reads, any thread may send).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import pickle
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiges.engine.items import Payload
from aiges.engine.packing import OUT_OF_BAND_MIN, Gather, pack, unpack
from aiges.engine.packing import out_of_band as out_of_band
from aiges.engine.shm import MEMFD_MIN, SHM_MIN, MappedFile, ShmRing, read_memfd, write_memfd

CANCEL = struct.Struct("<Q")
"""A call whose caller went away, by its id, as the server names it on a worker's cancel socket
(a socket of its own, read by a thread in the worker: ``aiges.worker.call_state``)."""
HEADER = struct.Struct("<IH")
BUFFER = struct.Struct("<BQQ")
INLINE, IN_RING, IN_MEMFD = 0, 1, 2
SOCKET_BUFFER = 4 << 20
READ_CHUNK = 256 << 10
MAX_IOV = 512
MAX_FDS = 64
"""Descriptors sent with one ``sendmsg`` at most (the kernel takes 253)."""
ANCILLARY = socket.CMSG_SPACE(253 * struct.calcsize("i"))
FD = struct.Struct("i")
Piece = bytes | memoryview
__all__ = ["OUT_OF_BAND_MIN", "AsyncChannel", "BlockingChannel", "FrameBuffer", "encode", "out_of_band"]


def encode(
    message: object,
    ring: ShmRing | None = None,
    wait_for_ring: bool = False,
    fds: list[int] | None = None,
    defer_large: bool = False,
) -> list[Piece] | None:
    """The pieces of one frame. Buffers of ``MEMFD_MIN`` and more go into memfds whose
    descriptors are appended to ``fds`` (the caller sends them with the frame, then closes them);
    without ``fds`` they go where smaller ones would. None, with nothing kept, when the frame
    must wait: with ``wait_for_ring``, a buffer does not fit in the ring only because the reader
    has not caught up (the caller retries after its reply); with ``defer_large``, a buffer would
    need a memfd (the caller encodes it when it sends it)."""
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(pack(message), protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return [HEADER.pack(len(meta), 0) + meta]
    descriptors = []
    inline: list[Piece] = []
    ring_mark = ring.produced if ring is not None else 0
    fds_mark = len(fds) if fds is not None else 0
    for buffer in buffers:
        raw = buffer.raw()
        owner = raw.obj
        pieces: tuple[Payload, ...]
        if type(owner) is Gather:
            pieces, n = owner.pieces, owner.size
        else:
            pieces, n = (raw,), raw.nbytes
        if n >= MEMFD_MIN and (fds is not None or defer_large):
            if defer_large:
                _roll_back(ring, ring_mark, fds, fds_mark)
                return None
            assert fds is not None
            fds.append(write_memfd(pieces))
            descriptors.append(BUFFER.pack(IN_MEMFD, n, 0))
            continue
        placed = ring.put_pieces(pieces, n) if ring is not None and n >= SHM_MIN else None
        if placed is None and wait_for_ring and ring is not None and n >= SHM_MIN and ring.busy and n <= ring.size:
            _roll_back(ring, ring_mark, fds, fds_mark)
            return None
        if placed is None:
            descriptors.append(BUFFER.pack(INLINE, n, 0))
            inline.extend(piece if isinstance(piece, (bytes, memoryview)) else memoryview(piece) for piece in pieces)
        else:
            descriptors.append(BUFFER.pack(IN_RING, n, placed[0]))
    return [HEADER.pack(len(meta), len(buffers)) + b"".join(descriptors), meta, *inline]


def _roll_back(ring: ShmRing | None, ring_mark: int, fds: list[int] | None, fds_mark: int) -> None:
    """Undo what a frame that must wait took: its ring space, its memfds."""
    if ring is not None:
        ring.produced = ring_mark
    if fds is not None:
        close_all(fds[fds_mark:])
        del fds[fds_mark:]


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def received_fds(ancillary: list[tuple[int, int, bytes]], flags: int) -> list[int]:
    """The descriptors a ``recvmsg`` brought; ConnectionError if some were cut off (the frames
    that need them could never be read)."""
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % FD.size
            fds.extend(fd for (fd,) in FD.iter_unpack(data[:usable]))
    if flags & socket.MSG_CTRUNC:
        close_all(fds)
        raise ConnectionError("descriptors passed with a frame were cut off")
    return fds


def fd_message(fds: list[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []


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

    With ``materialize`` (the server's end), every buffer arrives as bytes of its own: copied out
    of the ring (released at once), read out of its memfd with ``pread`` (closed at once).
    Without (the worker's end), ring buffers arrive as views of the ring and memfd buffers as
    views of a read-only mapping (``shm.MappedFile``): the reader calls ``release`` when done
    with the oldest message handed out, which frees its ring space and closes its memfds."""

    def __init__(self, ring: ShmRing | None = None, materialize: bool = True) -> None:
        self.buf = bytearray(READ_CHUNK)
        self.start = 0
        self.end = 0
        self.need = 0
        self.ring = ring
        self.materialize = materialize
        self.fds: deque[int] = deque()
        """Descriptors received, not yet taken by their frames."""
        self.held: deque[tuple[int | None, list[MappedFile]]] = deque()
        """Per message handed out (without ``materialize``): the end of its ring space, its files."""

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
            files: list[MappedFile] = []
            with memoryview(buf) as view:
                meta = view[pos : pos + meta_len]
                pos += meta_len
                buffers: list[Payload] = []
                for where, length, position in descriptors:
                    if where == INLINE:
                        buffers.append(bytes(view[pos : pos + length]))
                        pos += length
                    elif where == IN_MEMFD:
                        if not self.fds:
                            raise ConnectionError("a frame names a memfd that did not come with it")
                        fd = self.fds.popleft()
                        if self.materialize:
                            buffers.append(read_memfd(fd, length))
                        else:
                            mapped = MappedFile.open(fd, length)
                            files.append(mapped)
                            buffers.append(memoryview(mapped))
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
                self.held.append((ring_end, files))
            self.start += frame_len
        if self.start == self.end:
            self.start = self.end = 0
        return out

    def release(self) -> None:
        """The oldest message handed out is done with: its ring buffers may be reused, its memfds go."""
        end, files = self.held.popleft()
        if end is not None and self.ring is not None:
            self.ring.release(end)
        for mapped in files:
            mapped.discard()

    def close(self) -> None:
        """Close the descriptors no frame took (the channel is gone)."""
        close_all(list(self.fds))
        self.fds.clear()
        while self.held:
            for mapped in self.held.popleft()[1]:
                mapped.discard()


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
        self._unsent_fds: list[int] = []
        """Descriptors of the frames in ``_unsent``, to go with its next ``sendmsg``."""
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
        frame = (
            None
            if self._outbox and not self._encoded_tail
            else encode(message, self._send_ring, wait_for_ring=True, defer_large=True)
        )
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
        """Send the queued frames. A frame is encoded (its ring buffers copied into the ring)
        when it is queued, while its bytes are still in cache; one whose buffer waits for ring
        space stays queued as a message, with those behind it, until the worker answers (it frees
        the ring as it reads). A frame with a buffer for a memfd is encoded only now, as it
        leaves, so that a worker's queue of held calls never doubles their payloads."""
        self._flush_scheduled = False
        if self._closed or not self._outbox:
            return
        pieces: list[Piece] = []
        fds: list[int] = []
        try:
            while self._outbox and len(fds) < MAX_FDS:
                head = self._outbox[0]
                frame = head if isinstance(head, list) else encode(head, self._send_ring, wait_for_ring=True, fds=fds)
                if frame is None:
                    break
                self._outbox.popleft()
                pieces.extend(frame)
        except BaseException:
            close_all(fds)
            raise
        if not self._outbox:
            self._encoded_tail = True
        self._unsent_fds = fds  # all sent with the first sendmsg: before the frames that need them
        for start in range(0, len(pieces), MAX_IOV):
            batch = pieces[start : start + MAX_IOV]
            try:
                sent = self._sendmsg(batch)
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
        if len(fds) >= MAX_FDS and self._outbox:  # frames left by the descriptor cap: the next pass
            self.flush()

    def _sendmsg(self, pieces: Sequence[Piece]) -> int:
        """One ``sendmsg``, with the descriptors still to send; they are closed here once sent."""
        if not self._unsent_fds:
            return self._sock.sendmsg(pieces)
        sent = self._sock.sendmsg(pieces, fd_message(self._unsent_fds))
        close_all(self._unsent_fds)
        self._unsent_fds = []
        return sent

    def _keep_unsent(self, pieces: list[Piece], sent: int) -> None:
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
                sent = self._sendmsg(list(self._unsent)[:MAX_IOV])
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
                n, ancillary, flags, _ = self._sock.recvmsg_into([room], ANCILLARY, socket.MSG_CMSG_CLOEXEC)
                if ancillary:
                    self._frames.fds.extend(received_fds(ancillary, flags))
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
            try:
                messages = self._frames.messages()
            except (ConnectionError, OSError):
                self.close()
                return
            for message in messages:
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
        close_all(self._unsent_fds)
        self._unsent_fds = []
        self._outbox.clear()
        self._frames.close()
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
            pieces: list[Piece] = []
            fds: list[int] = []
            try:
                for message in messages:
                    pieces.extend(encode(message, self._send_ring, fds=fds) or ())
                    if len(fds) >= MAX_FDS:
                        self._send(pieces, fds)
                        pieces = []
                if pieces:
                    self._send(pieces, fds)
            finally:
                close_all(fds)

    def _send(self, pieces: list[Piece], fds: list[int]) -> None:
        """Send ``pieces``, the descriptors ``fds`` with the first ``sendmsg`` (then closed)."""
        for start in range(0, len(pieces), MAX_IOV):
            batch = pieces[start : start + MAX_IOV]
            if fds:
                sent = self._sock.sendmsg(batch, fd_message(fds))
                close_all(fds)
                fds.clear()
            else:
                sent = self._sock.sendmsg(batch)
            total = sum(_nbytes(p) for p in batch)
            if sent < total:
                self._sock.sendall(b"".join(bytes(memoryview(p).cast("B")) for p in batch)[sent:])

    def done(self) -> None:
        """The oldest received message is handled: buffers it had in the ring may be reused,
        its memfds closed."""
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
                n, ancillary, flags, _ = self._sock.recvmsg_into([room], ANCILLARY, socket.MSG_CMSG_CLOEXEC)
            except TimeoutError:
                raise TimeoutError from None
            finally:
                room.release()
            if ancillary:
                self._frames.fds.extend(received_fds(ancillary, flags))
            if n == 0:
                raise EOFError("server closed the worker channel")
            self._frames.end += n
            wait = None

    def close(self) -> None:
        self._frames.close()
        self._sock.close()
