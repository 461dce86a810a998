"""Byte-range locks on the host state's file: Linux open file description locks (``fcntl(2)``
``F_OFD_SETLKW``), each paired with a thread lock.

Why these: the kernel drops a lock when the last descriptor of its open file description closes,
so also when its process dies however it dies (SIGKILL included): no lock is ever left held by a
dead front, and a lock held for a front's whole life (its slot's) tells the others it is alive,
with no pid to go stale or be reused. Unlike classic POSIX record locks they belong to the open
file, not to the process, so closing another descriptor of the file does not drop them and two
opens in one process exclude each other. Threads of one process share its open file: the thread
lock orders them. The byte ranges locked carry no data (``layout``).
"""

from __future__ import annotations

import fcntl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# struct flock { short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid; } (Linux,
# native alignment; padded to the kernel's size). OFD locks need l_pid = 0.
_FLOCK = struct.Struct("@hhqqi4x")
_SEEK_SET = 0


def _flock(kind: int, offset: int) -> bytes:
    return _FLOCK.pack(kind, _SEEK_SET, offset, 1, 0)


class RangeLocks:
    """One-byte locks at chosen offsets of the open file ``fd``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._threads: dict[int, threading.Lock] = {}

    def _thread_lock(self, offset: int) -> threading.Lock:
        lock = self._threads.get(offset)
        if lock is None:
            lock = self._threads.setdefault(offset, threading.Lock())
        return lock

    @contextmanager
    def hold(self, offset: int) -> Iterator[None]:
        """The lock at ``offset``, waiting for it, for as long as the context lasts."""
        with self._thread_lock(offset):
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_WRLCK, offset))
            try:
                yield
            finally:
                fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, offset))

    def try_take(self, offset: int) -> bool:
        """Take the lock at ``offset`` and keep it (until ``release``) if no other open file holds it."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, offset))
        except (BlockingIOError, PermissionError):
            return False
        return True

    def release(self, offset: int) -> None:
        fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, offset))

    def held_elsewhere(self, offset: int) -> bool:
        """Whether another open file holds the lock at ``offset`` (asked, not taken)."""
        answer = fcntl.fcntl(self.fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, offset))
        return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)
