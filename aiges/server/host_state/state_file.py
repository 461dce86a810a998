"""The host state's file: opened, checked (or made) and mapped by each front of a port.

The first front of a port makes it: a sparse file of ``Layout.size`` bytes (tmpfs pages are
taken only as they are written) with the header filled in. A later front checks that the header
is what its own settings make; if not, it refuses to start while any front made with the other
settings lives, and makes the file again once none does. The last front to leave removes the
file; a front that opened a file just removed (it waited on the setup lock while the last one
left) sees that its inode is no longer the path's and opens again.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from aiges.server.host_state.layout import HEADER, LOCK_FRONT, LOCK_SETUP, MAGIC, VERSION, Layout
from aiges.server.host_state.locks import RangeLocks


class HostStateError(Exception):
    """The host state cannot be used; the message is the line the user sees."""


class StateFile:
    def __init__(self, path: Path, layout: Layout, fd: int, region: mmap.mmap, salt: bytes) -> None:
        self.path = path
        self.layout = layout
        self.fd = fd
        self.region = region
        self.view = memoryview(region)
        self.locks = RangeLocks(fd)
        self.salt = salt

    @classmethod
    @contextmanager
    def opened(cls, path: Path, layout: Layout) -> Iterator[StateFile]:
        """The file, checked and mapped, with the setup lock held while the context lasts."""
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            state: StateFile | None = None
            kept = False
            try:
                with RangeLocks(fd).hold(LOCK_SETUP):
                    if not _still_at(path, fd):
                        continue
                    state = cls._checked(path, layout, fd)
                    yield state
                    kept = True
                    return
            finally:
                if kept:
                    pass
                elif state is not None:
                    state.close()
                else:
                    os.close(fd)
        raise HostStateError(f"{path}: the host state file keeps being removed while this front opens it")

    @classmethod
    def _checked(cls, path: Path, layout: Layout, fd: int) -> StateFile:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise HostStateError(
                f"{path}: the host state file must belong to this user and be writable by no other "
                f"(uid {info.st_uid}, mode {stat.filemode(info.st_mode)})"
            )
        wanted = (MAGIC, VERSION, layout.max_fronts, layout.app_slots, layout.licences, layout.replay_bytes)
        found: tuple[object, ...] = ()
        salt = b""
        if info.st_size >= layout.header + HEADER.size:
            header = HEADER.unpack(os.pread(fd, HEADER.size, layout.header))
            found, salt = header[:6], header[6]
        if found != wanted or info.st_size != layout.size:
            locks = RangeLocks(fd)
            live = [index for index in range(layout.max_fronts) if locks.held_elsewhere(LOCK_FRONT + index)]
            if live:
                raise HostStateError(
                    f"{path}: the fronts already on this port ({len(live)} live) were started with other "
                    f"settings ({_describe(found)}); this one has {layout.describe()}: give every front of a "
                    "port the same [fc] max and [auth] replay_mb"
                )
            salt = os.urandom(32)
            os.ftruncate(fd, 0)
            os.ftruncate(fd, layout.size)
            os.pwrite(fd, HEADER.pack(*wanted, salt), layout.header)
        region = mmap.mmap(fd, layout.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(path, layout, fd, region, salt)

    def others_live(self, own: int | None) -> list[int]:
        """The front slots whose lock another open file holds (asked, not taken)."""
        return [
            index
            for index in range(self.layout.max_fronts)
            if index != own and self.locks.held_elsewhere(LOCK_FRONT + index)
        ]

    def remove(self) -> None:
        """Take the file's name away (the last front leaving, under the setup lock)."""
        if _still_at(self.path, self.fd):
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.view.release()
        with suppress(BufferError):  # a view of it is still held: unmapped when that goes (no lock is held)
            self.region.close()
        _close_quietly(self.fd)


def _still_at(path: Path, fd: int) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _close_quietly(fd: int) -> None:
    with suppress(OSError):
        os.close(fd)


def _describe(found: tuple[object, ...]) -> str:
    if len(found) < 6 or found[0] != MAGIC:
        return "not a host state file of this version"
    _, _, fronts, _, licences, replay = found
    assert isinstance(replay, int)
    return f"licences {licences}, replay cache {replay >> 20} MiB, {fronts} fronts"
