"""An etcd watch stays silent when its member stalls or loses its quorum, which looks the same as
nothing changing. ``heartbeat`` reads a key every few seconds beside the watch and, when the read
fails, cancels the watch, so its follower connects again (to another member) and lists afresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

INTERVAL_S = 3.0
TIMEOUT_S = 3.0
BACKOFF_S = (0.5, 1.0, 2.0)
"""Between rounds over every member: short, so that a watch is back within moments of etcd."""


def retry_delay(attempt: int, members: int) -> float:
    """Each member once quickly, then a short back-off before the next round."""
    if attempt % members:
        return 0.1
    return BACKOFF_S[min(attempt // members, len(BACKOFF_S)) - 1]


class WatchStalled(Exception):
    """The member behind a watch stopped answering."""


async def heartbeat(client: Any, watch: Any, key: bytes, interval_s: float = INTERVAL_S) -> None:
    """Run beside ``async for event in watch``; cancels ``watch`` when ``client`` cannot read."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.wait_for(client.get(key), TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure means the member is of no use now
            await watch.cancel()
            return


async def watched(client: Any, watch: Any, key: bytes) -> AsyncIterator[Any]:
    """The watch's events, with a heartbeat; raises WatchStalled when the watch ends (cancelled
    by the heartbeat, or by etcd)."""
    beat = asyncio.create_task(heartbeat(client, watch, key))
    try:
        async for event in watch:
            yield event
    finally:
        beat.cancel()
    raise WatchStalled("the etcd member stopped answering")
