"""The replay cache of nonce'd signatures: fixed memory, what happens when it is full (refused,
never let through), expiry, and entries written by a process that died mid-write."""

from __future__ import annotations

import random
import struct

import pytest

from aiges.errors import AigesError, ErrorCode
from aiges.server.security.replay_cache import BUCKET_BYTES, KEY_BYTES, WAYS, ReplayCache, ThreadStripes

HORIZON = 601.0


def small_cache(buckets: int = 64 * 64) -> ReplayCache:
    return ReplayCache(memoryview(bytearray(buckets * BUCKET_BYTES)), ThreadStripes(), b"salt" * 4, HORIZON)


def signatures(count: int, seed: int = 1) -> list[bytes]:
    chosen = random.Random(seed)
    return [chosen.randbytes(32) for _ in range(count)]


def test_a_signature_is_accepted_once_until_it_expires():
    cache = small_cache()
    first, second = signatures(2)
    assert cache.first_use(first, expires=100, now=0)
    assert not cache.first_use(first, expires=100, now=50)
    assert cache.first_use(second, expires=100, now=50)
    assert cache.first_use(first, expires=200, now=100), "its date has left the window: the date check refuses it"
    assert cache.entries(now=100) == 1


def test_memory_is_fixed_and_when_full_nothing_is_let_through():
    cache = small_cache(64 * 64)  # 64 stripes of 64 buckets, as a real one (of 1,365 each at 32 MiB)
    assert cache.capacity == 64 * 64 * WAYS
    recorded: list[bytes] = []
    full_at = None
    for signature in signatures(cache.capacity * 2):
        try:
            assert cache.first_use(signature, expires=300, now=1)
        except AigesError as exc:
            assert exc.code == ErrorCode.STATE_FULL and "retry shortly" in exc.message
            full_at = len(recorded)
            break
        recorded.append(signature)
    assert full_at is not None, "the cache never filled"
    assert full_at >= 0.8 * cache.capacity, f"refused at {full_at} of {cache.capacity} slots"
    assert cache.entries(now=1) == full_at
    for signature in recorded:  # every replay is still refused while the cache is full
        assert not cache.first_use(signature, expires=300, now=2)
    later = signatures(50, seed=2)
    assert all(cache.first_use(s, expires=900, now=301) for s in later), "room again once the window has passed"
    assert not any(cache.first_use(s, expires=900, now=302) for s in later)


def test_in_memory_cache_takes_the_size_it_is_given():
    cache = ReplayCache.in_memory(1 << 20, HORIZON)
    assert cache.capacity == (1 << 20) // BUCKET_BYTES // cache.stripes * cache.stripes * WAYS
    assert cache.capacity * (KEY_BYTES + 8) <= 1 << 20
    with pytest.raises(ValueError):
        ReplayCache(memoryview(bytearray(BUCKET_BYTES - 1)), ThreadStripes(), b"s" * 16, HORIZON)


def test_two_caches_on_one_buffer_share_what_they_saw():
    """What the fronts of a port do with the host's region (across processes: test_host_state)."""
    buffer = memoryview(bytearray(64 * BUCKET_BYTES))
    one, other = (ReplayCache(buffer, ThreadStripes(), b"salt" * 4, HORIZON) for _ in range(2))
    for signature in signatures(200):
        assert one.first_use(signature, expires=300, now=1)
        assert not other.first_use(signature, expires=300, now=1)


def test_a_slot_with_an_impossible_expiry_counts_as_free():
    """A process that died writing a slot may leave any bytes: an expiry beyond the horizon (no
    checker writes one) does not hold the slot for ever."""
    buffer = memoryview(bytearray(BUCKET_BYTES))  # one bucket: every signature lands in it
    for way in range(WAYS):
        struct.pack_into("<d", buffer, WAYS * KEY_BYTES + way * 8, 1e300)
    cache = ReplayCache(buffer, ThreadStripes(), b"salt" * 4, HORIZON)
    assert cache.entries(now=1) == 0
    assert all(cache.first_use(s, expires=300, now=1) for s in signatures(WAYS))
    with pytest.raises(AigesError):
        cache.first_use(signatures(1, seed=9)[0], expires=300, now=1)


def test_a_full_cache_is_answered_retry_shortly_on_both_ports():
    import grpc
    from aiohttp.test_utils import make_mocked_request

    from aiges.errors import http_status
    from aiges.server.security.grpc_auth import GRPC_STATUS
    from aiges.server.security.http_auth import refusal
    from aiges.server.security.replay_cache import full_error

    answer = refusal(make_mocked_request("POST", "/v1/private/echo"), full_error())
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert b'"code": 10142' in answer.body
    assert GRPC_STATUS[http_status(ErrorCode.STATE_FULL)] == grpc.StatusCode.UNAVAILABLE
