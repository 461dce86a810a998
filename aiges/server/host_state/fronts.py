"""The registry of a port's live fronts: a slot each, its lock held for the front's whole life.

A front joining takes the lowest slot whose lock no one holds (under the setup lock), and writes
its pid, start time and local socket path there; the slot's index is the front index its
handles carry. A front is live while its slot's lock is held: when it dies the kernel drops the
lock, and the next sweep (``HostState.reclaim``) frees the slot and its share of the counters.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from aiges.server.host_state.layout import FRONT, FRONT_BYTES, FRONT_FREE, FRONT_LIVE, LOCK_FRONT
from aiges.server.host_state.state_file import HostStateError, StateFile


@dataclass(frozen=True, slots=True)
class FrontInfo:
    index: int
    pid: int
    started: float
    socket: str
    """The Unix socket path the front can be reached at on this host, for frames it holds."""


class FrontTable:
    def __init__(self, state: StateFile) -> None:
        self.state = state
        self.layout = state.layout

    def _offset(self, index: int) -> int:
        return self.layout.fronts + index * FRONT_BYTES

    def claim(self, socket_for: str) -> int:
        """A free slot for this process, its lock held from now on (call under the setup lock).
        ``socket_for``: the socket path, with ``{index}`` for the slot's index."""
        locks = self.state.locks
        for index in range(self.layout.max_fronts):
            if locks.try_take(LOCK_FRONT + index):
                socket = socket_for.format(index=index)
                encoded = socket.encode()
                if len(encoded) > 107:
                    locks.release(LOCK_FRONT + index)
                    raise HostStateError(
                        f"{socket}: a Unix socket path has at most 107 bytes; choose a shorter state_dir"
                    )
                FRONT.pack_into(self.state.view, self._offset(index), FRONT_LIVE, os.getpid(), time.time(), encoded)
                return index
        raise HostStateError(f"{self.layout.max_fronts} fronts already share this port: no slot is free")

    def leave(self, index: int) -> None:
        """Free this process's own slot and drop its lock (under the setup lock)."""
        self.free(index)
        self.state.locks.release(LOCK_FRONT + index)

    def free(self, index: int) -> None:
        FRONT.pack_into(self.state.view, self._offset(index), FRONT_FREE, 0, 0.0, b"")

    def recorded(self, index: int) -> FrontInfo | None:
        """What the slot says (whether or not its front still lives)."""
        state, pid, started, socket = FRONT.unpack_from(self.state.view, self._offset(index))
        if state != FRONT_LIVE:
            return None
        return FrontInfo(index, pid, started, socket.rstrip(b"\0").decode(errors="replace"))

    def is_live(self, index: int, own: int) -> bool:
        return index == own or self.state.locks.held_elsewhere(LOCK_FRONT + index)

    def dead(self, own: int) -> list[int]:
        """Slots that say live whose front no longer holds their lock."""
        return [
            index
            for index in range(self.layout.max_fronts)
            if index != own and self.recorded(index) is not None and not self.is_live(index, own)
        ]
