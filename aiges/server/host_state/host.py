"""``HostState``: what the fronts sharing one port on one host (``[svcName] reuseport``) keep
together, in one file of shared memory (``<state_dir>/aiges-<port>.state``, see ``layout``):

    the live fronts    each with its index (in its handles) and its local socket path
    licences           ``[fc] max`` for the host, each front's use in its own slot
    per app            a token bucket for the host, sessions open per front slot
    replay cache       the region ``aiges.server.security.replay_cache`` keeps nonce'd signatures in

A front that dies (however: SIGKILL included) drops its slot's lock; the next time a limit is
reached (at most every ``RECLAIM_S``) or a front joins, the dead fronts' slots are freed and
their licences and sessions given back to the host.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from aiges.errors import AigesError, ErrorCode
from aiges.server.host_state.counters import AppTable, Licences
from aiges.server.host_state.fronts import FrontInfo, FrontTable
from aiges.server.host_state.layout import LOCK_REPLAY, LOCK_SETUP, Layout
from aiges.server.host_state.state_file import HostStateError, StateFile

log = structlog.get_logger("aiges.host")

RECLAIM_S = 0.2
"""A process looks for dead fronts at most this often when a limit is reached."""


def default_folder() -> Path:
    return Path("/dev/shm") / f"aiges-{os.getuid()}"


@dataclass(frozen=True)
class HostSettings:
    folder: Path
    port: int
    licences: int
    replay_bytes: int

    @property
    def path(self) -> Path:
        return self.folder / f"aiges-{self.port}.state"

    @property
    def socket_pattern(self) -> str:
        return str(self.folder / f"aiges-{self.port}-front-{{index}}.sock")

    def layout(self) -> Layout:
        return Layout(licences=self.licences, replay_bytes=self.replay_bytes)


class ReplayStripes:
    """The replay cache's stripe locks, in the host state's file."""

    def __init__(self, state: StateFile) -> None:
        self.state = state

    def hold(self, stripe: int) -> AbstractContextManager[None]:
        return self.state.locks.hold(LOCK_REPLAY + stripe)


def _table_full(app_id: str) -> AigesError:
    return AigesError(
        ErrorCode.STATE_FULL,
        f"the host's app table is full: app {app_id} cannot be counted; restart the fronts of this port to clear it",
    )


class HostState:
    def __init__(self, state: StateFile, front: int) -> None:
        self.state = state
        self.front = front
        self.fronts_table = FrontTable(state)
        self.licence_counts = Licences(state, front)
        self.apps = AppTable(state, front)
        self._reclaimed = 0.0
        self._closed = False
        self._lent: list[memoryview] = []

    @classmethod
    def join(cls, settings: HostSettings) -> HostState:
        """Join the port's host state (made if this is the first front); raises HostStateError."""
        _ensure_folder(settings.folder)
        try:
            with StateFile.opened(settings.path, settings.layout()) as state:
                fronts = FrontTable(state)
                others = state.others_live(None)
                front = fronts.claim(settings.socket_pattern)
                host = cls(state, front)
                if not others:
                    host.licence_counts.set_total(settings.licences)
                host._free(front)  # whatever a dead front left in this slot
                host._reclaim_dead()
        except OSError as exc:
            raise HostStateError(f"{settings.path}: cannot use the host state file: {exc.strerror}") from None
        log.info("joined the host's fronts", front=front, fronts=len(others) + 1, state=str(settings.path))
        return host

    @property
    def socket_path(self) -> str:
        info = self.fronts_table.recorded(self.front)
        assert info is not None
        return info.socket

    @property
    def salt(self) -> bytes:
        return self.state.salt

    # -- licences ---------------------------------------------------------------------------------

    def acquire_licence(self) -> bool:
        """Take one of the host's licences for this front; False when all are in use."""
        if self.licence_counts.acquire():
            return True
        return self.reclaim() and self.licence_counts.acquire()

    def release_licence(self) -> None:
        self.licence_counts.release()

    def licences_total(self) -> int:
        return self.licence_counts.total()

    def licences_used(self) -> int:
        return self.licence_counts.used()

    def resize_licences(self, total: int) -> None:
        """The host's total (AILBType); licences in use beyond it are given back as they end."""
        self.licence_counts.set_total(total)

    # -- per app ------------------------------------------------------------------------------------

    def take_token(self, app_id: str, rate: float, burst: float) -> bool:
        """A token from the app's bucket for the host; False when it is empty."""
        taken = self.apps.take_token(app_id, rate, burst)
        if taken is None:
            raise _table_full(app_id)
        return taken

    def open_session(self, app_id: str, limit: int) -> bool:
        """Count a session of the app opening in this front; False when the host has ``limit``
        open (0: no limit). Reserve before opening, ``close_session`` if the open fails."""
        opened = self.apps.open_session(app_id, limit)
        if opened is None:
            raise _table_full(app_id)
        if opened or not self.reclaim():
            return opened
        return bool(self.apps.open_session(app_id, limit))

    def close_session(self, app_id: str) -> None:
        self.apps.close_session(app_id)

    def sessions(self, app_id: str) -> int:
        return self.apps.sessions(app_id)

    # -- fronts ------------------------------------------------------------------------------------

    def fronts(self) -> list[FrontInfo]:
        """The live fronts of the port, this one included."""
        table = self.fronts_table
        found = (table.recorded(index) for index in range(self.state.layout.max_fronts))
        return [info for info in found if info is not None and table.is_live(info.index, self.front)]

    def front_info(self, index: int) -> FrontInfo | None:
        """The front with that index, if it lives (where to forward a frame of its session)."""
        if not 0 <= index < self.state.layout.max_fronts:
            return None
        info = self.fronts_table.recorded(index)
        return info if info is not None and self.fronts_table.is_live(index, self.front) else None

    def reclaim(self, force: bool = False) -> bool:
        """Free the slots of fronts that died, and their licences and sessions; True if any was.
        At most every ``RECLAIM_S`` unless ``force``."""
        now = time.monotonic()
        if not force and now - self._reclaimed < RECLAIM_S:
            return False
        self._reclaimed = now
        with self.state.locks.hold(LOCK_SETUP):
            return bool(self._reclaim_dead())

    def _reclaim_dead(self) -> list[int]:
        dead = self.fronts_table.dead(self.front)
        for index in dead:
            self._free(index)
            self.fronts_table.free(index)
        if dead:
            log.warning("fronts gone, their licences and sessions given back", fronts=dead)
        return dead

    def _free(self, index: int) -> None:
        self.licence_counts.zero_front(index)
        self.apps.zero_front(index)

    # -- the replay cache's region --------------------------------------------------------------------

    def replay_region(self) -> tuple[memoryview, ReplayStripes]:
        layout = self.state.layout
        region = self.state.view[layout.replay : layout.replay + layout.replay_bytes]
        self._lent.append(region)  # released at close, so that the mapping can be closed
        return region, ReplayStripes(self.state)

    def close(self) -> None:
        """Leave: this front's licences and sessions given back, its slot freed; the last front
        removes the file."""
        if self._closed:
            return
        self._closed = True
        with self.state.locks.hold(LOCK_SETUP):
            self._free(self.front)
            self.fronts_table.leave(self.front)
            if not self.state.others_live(None):
                self.state.remove()
        for region in self._lent:
            region.release()
        self.state.close()


def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as exc:
        raise HostStateError(f"{folder}: cannot make the host state folder: {exc.strerror}") from None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HostStateError(
            f"{folder}: the host state folder must belong to this user and be writable by no other "
            f"(uid {info.st_uid}, mode {stat.filemode(info.st_mode)})"
        )


@contextmanager
def joined(settings: HostSettings) -> Iterator[HostState]:
    host = HostState.join(settings)
    try:
        yield host
    finally:
        host.close()


def settings_for(folder: str, port: int, licences: int, replay_mb: int) -> HostSettings | None:
    """The host state of a front of ``port`` (``[svcName] state_dir``, ``port``, ``[fc] max``,
    ``[auth] replay_mb``); None for port 0, which no two fronts can share."""
    if port == 0:
        return None
    return HostSettings(Path(folder) if folder else default_folder(), port, licences, replay_mb << 20)
