"""Where everything is in the host state's file (all numbers little-endian).

    page 0      lock bytes only (no data): setup, licences, apps, one per front slot, one per
                replay stripe
    page 1      header: magic, version, the settings the layout was made from, a random salt
    fronts      MAX_FRONTS slots: state, pid, started (Unix s), local socket path
    licences    the host's licence total and licences in use, then each front slot's in use
    apps        APP_SLOTS entries: BLAKE2b of the app_id, its token bucket (tokens, when), its
                sessions open on the host, and those open in each front slot
    replay      the replay cache's buffer (``aiges.server.security.replay_cache``)

Every front of a port must make the same layout: the header says what it was made from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PAGE = 4096
MAGIC = b"AIGESHS1"
VERSION = 1
MAX_FRONTS = 64
APP_SLOTS = 4096

LOCK_SETUP = 0
"""Held while a front joins or leaves, and while dead fronts are looked for."""
LOCK_LICENCES = 1
LOCK_APPS = 2
LOCK_FRONT = 64
"""``LOCK_FRONT + index``: held by the front in that slot for its whole life."""
LOCK_REPLAY = 1024
"""``LOCK_REPLAY + stripe``: the replay cache's stripes."""

HEADER = struct.Struct("<8sIIIIQ32s")
"""magic, version, max fronts, app slots, licences configured, replay bytes, salt."""
FRONT = struct.Struct("<Iid108s")
"""state (0 free, 1 live), pid, started (Unix s), local socket path (NUL padded; AF_UNIX's 108)."""
FRONT_BYTES = 256
FRONT_FREE, FRONT_LIVE = 0, 1
COUNT = struct.Struct("<q")
APP_HEAD = struct.Struct("<16sddi4x")
"""BLAKE2b-128 of the app_id (all zero: a free entry), tokens, when (time.monotonic), sessions
open on the host (the sum of the front slots')."""
APP_SESSIONS_AT = 32
"""Where in an app's entry its host-wide session count is (the ``i`` of APP_HEAD)."""
SESSION = struct.Struct("<i")


def _pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


@dataclass(frozen=True)
class Layout:
    licences: int
    replay_bytes: int
    max_fronts: int = MAX_FRONTS
    app_slots: int = APP_SLOTS

    @property
    def header(self) -> int:
        return PAGE

    @property
    def fronts(self) -> int:
        return 2 * PAGE

    @property
    def licence_region(self) -> int:
        return self.fronts + _pages(self.max_fronts * FRONT_BYTES)

    @property
    def licences_used(self) -> int:
        return self.licence_region + 8

    def licence_slot(self, front: int) -> int:
        return self.licence_region + 16 + 8 * front

    @property
    def apps(self) -> int:
        return self.licence_region + _pages(16 + 8 * self.max_fronts)

    @property
    def app_bytes(self) -> int:
        return APP_HEAD.size + SESSION.size * self.max_fronts

    def app_entry(self, slot: int) -> int:
        return self.apps + slot * self.app_bytes

    @property
    def replay(self) -> int:
        return self.apps + _pages(self.app_slots * self.app_bytes)

    @property
    def size(self) -> int:
        return self.replay + _pages(self.replay_bytes)

    def describe(self) -> str:
        return f"licences {self.licences}, replay cache {self.replay_bytes >> 20} MiB, {self.max_fronts} fronts"
