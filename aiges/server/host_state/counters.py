"""The host's counters: licences, and per app a token bucket and its open sessions.

Each front counts its own use in its own slot (licences in use, sessions per app) next to the
host's sum, both changed together under the counter's lock; a limit is checked against the sum.
So a front that dies leaves only its own slot behind, which the next sweep subtracts from the
sum and zeroes (``zero_front``). The token buckets are one per app for the host (time is
``time.monotonic``, the same clock in every process).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from aiges.server.host_state.layout import APP_HEAD, APP_SESSIONS_AT, COUNT, LOCK_APPS, LOCK_LICENCES, SESSION
from aiges.server.host_state.state_file import StateFile

_EMPTY = bytes(16)


class Licences:
    """``[fc] max`` for the host: a licence is taken by one front and given back by it."""

    def __init__(self, state: StateFile, front: int) -> None:
        self.state = state
        self.front = front
        layout = state.layout
        self._total = layout.licence_region
        self._used = layout.licences_used
        self._own = layout.licence_slot(front)

    def _get(self, offset: int) -> int:
        return int(COUNT.unpack_from(self.state.view, offset)[0])

    def _set(self, offset: int, value: int) -> None:
        COUNT.pack_into(self.state.view, offset, value)

    def set_total(self, total: int) -> None:
        with self.state.locks.hold(LOCK_LICENCES):
            self._set(self._total, total)

    def total(self) -> int:
        return self._get(self._total)

    def used(self) -> int:
        return self._get(self._used)

    def own(self) -> int:
        return self._get(self._own)

    def acquire(self) -> bool:
        with self.state.locks.hold(LOCK_LICENCES):
            used = self._get(self._used)
            if used >= self._get(self._total):
                return False
            self._set(self._used, used + 1)
            self._set(self._own, self._get(self._own) + 1)
            return True

    def release(self) -> None:
        with self.state.locks.hold(LOCK_LICENCES):
            own = self._get(self._own)
            if own > 0:
                self._set(self._own, own - 1)
                self._set(self._used, max(0, self._get(self._used) - 1))

    def zero_front(self, front: int) -> None:
        slot = self.state.layout.licence_slot(front)
        with self.state.locks.hold(LOCK_LICENCES):
            self._set(self._used, max(0, self._get(self._used) - self._get(slot)))
            self._set(slot, 0)


class AppTable:
    """Per app: a token bucket for the host, its sessions open on the host and in each front
    slot. Apps are found by a BLAKE2b of their app_id (open addressing); an entry, once made,
    stays where it is while the file lives, so each process remembers where its apps are."""

    def __init__(self, state: StateFile, front: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.front = front
        self.clock = clock
        self.layout = state.layout
        self._entries: dict[str, int] = {}

    def _entry(self, app_id: str) -> int | None:
        """The app's entry (made if new; call under the apps lock); None when the table is full."""
        offset = self._entries.get(app_id)
        if offset is not None:
            return offset
        digest = hashlib.blake2b(app_id.encode(), digest_size=16).digest()
        slots = self.layout.app_slots
        start = int.from_bytes(digest[:8], "little") % slots
        view = self.state.view
        for probe in range(slots):
            offset = self.layout.app_entry((start + probe) % slots)
            found = bytes(view[offset : offset + 16])
            if found == _EMPTY:
                APP_HEAD.pack_into(view, offset, digest, 0.0, 0.0, 0)
            elif found != digest:
                continue
            self._entries[app_id] = offset
            return offset
        return None

    def take_token(self, app_id: str, rate: float, burst: float) -> bool | None:
        """One call's token from the app's bucket (``rate`` a second, ``burst`` at once: 0 for
        max(1, rate)); False when it is empty; None when the app table is full."""
        if rate <= 0:
            return True
        capacity = burst or max(1.0, rate)
        with self.state.locks.hold(LOCK_APPS):
            offset = self._entry(app_id)
            if offset is None:
                return None
            view = self.state.view
            digest, tokens, when, sessions = APP_HEAD.unpack_from(view, offset)
            now = self.clock()
            tokens = capacity if when == 0.0 else min(capacity, tokens + (now - when) * rate)
            taken = tokens >= 1.0
            APP_HEAD.pack_into(view, offset, digest, tokens - 1.0 if taken else tokens, now, sessions)
            return taken

    def open_session(self, app_id: str, limit: int) -> bool | None:
        """Count one more session of the app in this front, unless the host has ``limit`` open
        (0: no limit); None when the app table is full."""
        with self.state.locks.hold(LOCK_APPS):
            offset = self._entry(app_id)
            if offset is None:
                return None
            total = self._total(offset)
            if 0 < limit <= total:
                return False
            own = self._own(offset)
            self._put(offset + APP_SESSIONS_AT, total + 1)
            self._put(own, self._get(own) + 1)
            return True

    def close_session(self, app_id: str) -> None:
        with self.state.locks.hold(LOCK_APPS):
            offset = self._entries.get(app_id)
            if offset is None:
                return
            own = self._own(offset)
            count = self._get(own)
            if count > 0:
                self._put(own, count - 1)
                self._put(offset + APP_SESSIONS_AT, max(0, self._total(offset) - 1))

    def sessions(self, app_id: str) -> int:
        """The app's sessions open on the host."""
        with self.state.locks.hold(LOCK_APPS):
            offset = self._entry(app_id)
            return 0 if offset is None else self._total(offset)

    def zero_front(self, front: int) -> None:
        """Forget a slot's sessions (its front has died or left)."""
        column = APP_HEAD.size + SESSION.size * front
        view = self.state.view
        with self.state.locks.hold(LOCK_APPS):
            for slot in range(self.layout.app_slots):
                offset = self.layout.app_entry(slot)
                if view[offset : offset + 16] == _EMPTY:
                    continue
                count = self._get(offset + column)
                if count:
                    self._put(offset + APP_SESSIONS_AT, max(0, self._total(offset) - count))
                    self._put(offset + column, 0)

    def _total(self, offset: int) -> int:
        return self._get(offset + APP_SESSIONS_AT)

    def _get(self, at: int) -> int:
        return int(SESSION.unpack_from(self.state.view, at)[0])

    def _put(self, at: int, value: int) -> None:
        SESSION.pack_into(self.state.view, at, value)

    def _own(self, offset: int) -> int:
        return offset + APP_HEAD.size + SESSION.size * self.front
