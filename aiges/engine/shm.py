"""A shared-memory ring for large payloads between the server and one worker.

Sending a megabyte through a Unix socket costs two kernel copies and, because a socket buffer is
far smaller than that, several wake-ups of the reader. Large buffers are therefore written once
into a ring that both processes map, and only their position travels in the frame. The ring is a
``memfd`` (anonymous shared memory, counted like ordinary memory), so it never fills ``/dev/shm``
the way POSIX shared-memory segments do in containers.

One producer, one consumer, in order: the producer allocates at a running position and the
consumer releases up to the end of each allocation it has finished with, by writing its position
into the ring's 8-byte header. Calls to one worker are served in order, so releases come in
allocation order. A buffer that does not fit (the consumer is behind, or it is larger than the
ring) goes through the socket instead.

Very large buffers (``MEMFD_MIN`` and up) travel in a memfd of their own instead, passed with the
frame (``SCM_RIGHTS``, ``aiges.engine.ipc``): the sender writes it with ``writev`` (the pages are
never mapped in the sender, so they do not count in its memory), the receiver reads what it
needs with ``pread`` into the bytes it keeps, or maps it (``MappedFile``) to look inside without
touching the rest, and closes it as soon as it has its own copy. Its pages exist only between
the two, once; through the ring they would stay resident in both processes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Sequence

from aiges.engine.items import Payload

HEADER = struct.Struct("<Q")
SHM_MIN = 64 << 10
MEMFD_MIN = 4 << 20


class ShmRing:
    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = size
        if fd is None:
            fd = os.memfd_create("aiges-ring", os.MFD_CLOEXEC)
            os.ftruncate(fd, HEADER.size + size)
        self.fd = fd
        self.map = mmap.mmap(fd, HEADER.size + size)
        self.view = memoryview(self.map)
        self.produced = 0

    @property
    def consumed(self) -> int:
        consumed: int = HEADER.unpack_from(self.map, 0)[0]
        return consumed

    @property
    def busy(self) -> bool:
        """Whether the consumer still holds something (so space will come back)."""
        return self.produced != self.consumed

    def put(self, data: memoryview) -> tuple[int, int] | None:
        """Copy ``data`` in; returns (position, length), or None when it does not fit now."""
        return self.put_pieces((data,), data.nbytes)

    def put_pieces(self, pieces: Sequence[Payload], n: int) -> tuple[int, int] | None:
        """Copy ``pieces`` (``n`` bytes in all) in, one after the other, as one allocation."""
        if n > self.size:
            return None
        start = self.produced
        offset = start % self.size
        if offset + n > self.size:
            start += self.size - offset
            offset = 0
        end = start + n
        if end - self.consumed > self.size:
            return None
        at = HEADER.size + offset
        for piece in pieces:
            with memoryview(piece) as view:
                length = view.nbytes
                self.view[at : at + length] = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            at += length
        self.produced = end
        return start, n

    def get(self, position: int, length: int) -> memoryview:
        """A view of an allocation (valid until it is released)."""
        offset = HEADER.size + position % self.size
        return self.view[offset : offset + length]

    def release(self, end: int) -> None:
        """The consumer is done with everything before ``end``."""
        HEADER.pack_into(self.map, 0, end)

    def reset(self) -> None:
        self.produced = 0
        HEADER.pack_into(self.map, 0, 0)

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


def write_memfd(pieces: Sequence[Payload]) -> int:
    """A new memfd holding ``pieces`` one after the other, written with ``writev`` (never mapped
    here); the caller owns the descriptor."""
    fd = os.memfd_create("aiges-payload", os.MFD_CLOEXEC)
    try:
        views = [memoryview(piece).cast("B") for piece in pieces]
        while views:
            written = os.writev(fd, views[:MAX_WRITEV])
            while views and written >= views[0].nbytes:
                written -= views.pop(0).nbytes
            if written:
                views[0] = views[0][written:]
    except BaseException:
        os.close(fd)
        raise
    return fd


MAX_WRITEV = 1024
"""IOV_MAX on Linux: the most pieces one ``writev`` takes."""


class MappedFile(mmap.mmap):
    """A buffer received in a memfd, mapped read-only: reading a part of it touches only that
    part's pages. ``copy_out`` reads a part into bytes with ``pread``, which leaves the mapping
    untouched; ``discard`` gives the memory back (the mapping goes once no view of it is left)."""

    fd: int

    @classmethod
    def open(cls, fd: int, size: int) -> MappedFile:
        mapped = cls(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        mapped.fd = fd
        return mapped

    def read_range(self, start: int, stop: int) -> bytes:
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise OSError(f"a shared buffer is shorter than announced ({len(data)} of {stop - start} bytes)")
        return data

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(BufferError):  # views of it are alive: unmapped when the last goes
            self.close()


def copy_out(data: Payload, start: int = 0, stop: int | None = None) -> bytes:
    """``data[start:stop]`` as bytes of its own, copied once: from a memfd with ``pread`` (its
    pages are not mapped in for it), from any other buffer with one copy; bytes as they are."""
    if type(data) is bytes:
        return data if start == 0 and (stop is None or stop == len(data)) else data[start:stop]
    with memoryview(data) as view:
        end = view.nbytes if stop is None else stop
        owner = view.obj
        if isinstance(owner, MappedFile) and owner.fd >= 0 and view.nbytes == len(owner):
            return owner.read_range(start, end)
        return view[start:end].tobytes()


def part(view: memoryview, start: int, stop: int) -> Payload:
    """``view[start:stop]`` of a received buffer: read into bytes of its own when the buffer is a
    memfd (its pages are not mapped in for it, and the memfd may go at once), a view otherwise."""
    owner = view.obj
    if isinstance(owner, MappedFile) and owner.fd >= 0 and view.nbytes == len(owner):
        return owner.read_range(start, stop)
    return view[start:stop]


def let_go(data: Payload) -> None:
    """Done with a received buffer that came in a memfd (it was read out with ``part`` or
    ``copy_out``): the view is released and the memfd closed and unmapped now. Other buffers are
    left alone (a ring's space goes back when the call is answered)."""
    if isinstance(data, memoryview) and isinstance(data.obj, MappedFile):
        mapped = data.obj
        with contextlib.suppress(BufferError):  # a view of it is still held: unmapped when it goes
            data.release()
        mapped.discard()


def read_memfd(fd: int, size: int) -> bytes:
    """A received memfd's bytes, read with ``pread`` (never mapped); the descriptor is closed."""
    try:
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"a shared buffer is shorter than announced ({len(data)} of {size} bytes)")
    return data
