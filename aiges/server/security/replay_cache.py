"""The replay cache of nonce'd signatures: a fixed amount of memory, shared by a host's fronts
when they share a port (the buffer is then a region of the host state's file).

A signature is remembered until its date leaves the window (``date + skew_s``). The buffer is
cut into stripes, each with its own lock, and each stripe into buckets of ``WAYS`` slots::

    bucket:  WAYS keys of 16 bytes | WAYS expiries (float64, Unix seconds; <= now: free)

A signature's key is a salted BLAKE2b of it (the salt is random per cache, so no caller can aim
its signatures at one bucket); the key picks a stripe and two buckets in it, and the signature
goes to the emptier one. A live entry is never evicted: when both buckets are full of entries
still in their window, the call is refused (``STATE_FULL``, 10142, "retry shortly"), so a
replay is never let through. Filled with random keys, the first refusal comes past 80 % of the
slots (``tests/unit/test_replay_cache.py``; 84 % at 32 MiB): 24 bytes a slot, so 32 MiB
(1.40 million slots) hold about 1.17 million signatures before the first refusal.

An entry whose expiry is further ahead than ``horizon_s`` cannot have been written by a checker
(a date is at most ``skew_s`` ahead, so an expiry at most ``2 * skew_s``): such a slot, left by a
process that died while writing it, counts as free.
"""

from __future__ import annotations

import bisect
import hashlib
import mmap
import os
import struct
import threading
from contextlib import AbstractContextManager
from typing import Protocol

from aiges.errors import AigesError, ErrorCode

WAYS = 16
KEY_BYTES = 16
SLOT_BYTES = KEY_BYTES + 8
BUCKET_BYTES = WAYS * SLOT_BYTES
MAX_STRIPES = 64
_EXPIRIES = struct.Struct(f"<{WAYS}d")
_EXPIRY = struct.Struct("<d")


class StripeLocks(Protocol):
    def hold(self, stripe: int) -> AbstractContextManager[None]:
        """Exclusive use of one stripe of the buffer while the context lasts."""


class ThreadStripes:
    """Stripe locks for a cache used by one process (its threads)."""

    def __init__(self, count: int = MAX_STRIPES) -> None:
        self._locks = [threading.Lock() for _ in range(count)]

    def hold(self, stripe: int) -> AbstractContextManager[None]:
        return self._locks[stripe]  # type: ignore[return-value]


def _spare(expiries: tuple[float, ...], now: float, limit: float) -> int:
    """How many of a bucket's ways are free: their expiry is not in (now, limit]."""
    ordered = sorted(expiries)
    return WAYS - bisect.bisect_right(ordered, limit) + bisect.bisect_right(ordered, now)


def full_error() -> AigesError:
    return AigesError(
        ErrorCode.STATE_FULL,
        "the replay cache is full of signatures still within their window ([auth] replay_mb): "
        "nonce'd calls are refused until some expire; retry shortly",
    )


class ReplayCache:
    """Signatures seen, in ``buffer`` (zeroed memory at first use), see the module's doc."""

    def __init__(self, buffer: memoryview, locks: StripeLocks, salt: bytes, horizon_s: float) -> None:
        buckets = len(buffer) // BUCKET_BYTES
        if buckets < 1:
            raise ValueError(f"a replay cache needs at least {BUCKET_BYTES} bytes")
        self.stripes = max(1, min(MAX_STRIPES, buckets // 64))  # two choices among many buckets each
        self.per_stripe = buckets // self.stripes
        self.capacity = self.stripes * self.per_stripe * WAYS
        self.horizon_s = horizon_s
        self._buffer = buffer
        self._locks = locks
        self._salt = salt[:16]

    @classmethod
    def in_memory(cls, size: int, horizon_s: float) -> ReplayCache:
        """A cache of ``size`` bytes of this process's memory (an anonymous mapping: pages are
        taken as they are first written, never more than ``size``)."""
        region = mmap.mmap(-1, size)
        return cls(memoryview(region), ThreadStripes(), os.urandom(16), horizon_s)

    def first_use(self, signature: bytes, expires: float, now: float) -> bool:
        """Record ``signature`` until ``expires``; False if it is already recorded and live.
        Raises AigesError(STATE_FULL) when it cannot be recorded (nothing is let through)."""
        if expires <= now:
            return True  # out of the window already: the date check refuses it from now on
        digest = hashlib.blake2b(signature, key=self._salt, digest_size=KEY_BYTES + 8).digest()
        key, place = digest[:KEY_BYTES], int.from_bytes(digest[KEY_BYTES:], "little")
        stripe, place = place % self.stripes, place // self.stripes
        base = stripe * self.per_stripe
        first = (base + place % self.per_stripe) * BUCKET_BYTES
        second = (base + (place // self.per_stripe) % self.per_stripe) * BUCKET_BYTES
        limit = now + self.horizon_s
        with self._locks.hold(stripe):
            expiries = self._scan(first, key, now, limit)
            if expiries is None:
                return False
            offset, spare = first, _spare(expiries, now, limit)
            if second != first:
                other = self._scan(second, key, now, limit)
                if other is None:
                    return False
                other_spare = _spare(other, now, limit)
                if other_spare > spare:
                    offset, spare, expiries = second, other_spare, other
            if spare == 0:
                raise full_error()
            free = next(way for way, expiry in enumerate(expiries) if not now < expiry <= limit)
            start = offset + free * KEY_BYTES
            self._buffer[start : start + KEY_BYTES] = key
            _EXPIRY.pack_into(self._buffer, offset + WAYS * KEY_BYTES + free * 8, expires)
        return True

    def _scan(self, offset: int, key: bytes, now: float, limit: float) -> tuple[float, ...] | None:
        """The expiries of the bucket at ``offset``; None when it holds ``key`` live."""
        expiries: tuple[float, ...] = _EXPIRIES.unpack_from(self._buffer, offset + WAYS * KEY_BYTES)
        keys = bytes(self._buffer[offset : offset + WAYS * KEY_BYTES])
        found = keys.find(key)
        while found != -1:
            if found % KEY_BYTES == 0 and now < expiries[found // KEY_BYTES] <= limit:
                return None
            found = keys.find(key, found + 1)
        return expiries

    def entries(self, now: float) -> int:
        """Live entries (a scan of the whole buffer: for tests and reports, not per call)."""
        count = 0
        for bucket in range(self.stripes * self.per_stripe):
            count += sum(self._live(bucket * BUCKET_BYTES, now))
        return count

    def _live(self, offset: int, now: float) -> list[bool]:
        limit = now + self.horizon_s
        return [now < expiry <= limit for expiry in _EXPIRIES.unpack_from(self._buffer, offset + WAYS * KEY_BYTES)]
