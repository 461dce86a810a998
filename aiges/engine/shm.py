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
"""

from __future__ import annotations

import mmap
import os
import struct

HEADER = struct.Struct("<Q")
SHM_MIN = 64 << 10


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
        n = data.nbytes
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
        self.view[HEADER.size + offset : HEADER.size + offset + n] = data
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
