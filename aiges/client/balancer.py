"""Which provider gets the next call, and whether a failed call may be tried on another one.

Both balanced clients (``aiges.client.BalancedClient``, blocking, and ``aiges xtest --etcd``,
asyncio) use this one policy.

**Choice.** The candidates are the providers the registry lists as SERVING, and of those, the ones
with free licences when any has (the registry's figure moves in twentieths of the total, so it
says "full" or "not full", not how loaded). Providers this client has seen fail (the connection
could not be made, or was lost) are left out until gRPC reports their channel READY again or the
registry lists them under a new lease (the server registered anew); when every candidate is so
marked, they are tried anyway. Of the candidates, two are drawn at random and the one with fewer
calls outstanding from this client wins, the lower latency average breaking a tie ("power of two
choices" over least outstanding requests). What the client itself observes is what it balances
on: a slower host keeps its calls longer, so it is drawn less (by Little's law, in proportion to
its speed), and a host that stops answering (its link is cut) piles up outstanding calls and stops
being chosen at once, long before its lease expires.

**Retry** (one-shot calls; a session's frames are never retried, only its opening when refused):

- never ran, always tried elsewhere: the server refused it (10110: no licence, or draining), or
  gRPC never reached the server (UNAVAILABLE with "failed to connect");
- may have run, tried elsewhere only when the caller declares the call idempotent: the
  connection was lost during the call (any other UNAVAILABLE, or CANCELLED by the server's end);
- never tried again: DEADLINE_EXCEEDED (the caller's time is spent), and every answer from the
  wrapper or a worker (109xx, 10109, ...): a call whose worker died may be what killed it, and
  would kill the next host's worker too.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

REFUSED_CODES = frozenset({10110})
MAX_ATTEMPTS = 3
EWMA_ALPHA = 0.2
PRUNE_AFTER_S = 60.0
LATENCY_TIE_FACTOR = 1.5
"""Between two providers with as many calls outstanding, the latency average decides only when one
is this much slower: equal hosts differ by noise, and must not be favoured for it."""
REFUSED_COOL_S = 1.0
"""A provider that refused a call (full, or draining) is passed over this long when others can
take the call: a refusal is fast, and would otherwise make it look like the least loaded."""

# Client channel settings for balanced clients: keep-alive pings while calls are outstanding find a
# connection that has gone silent (a cut link) in about keepalive_time + keepalive_timeout; the
# reconnection back-off is kept short so a host that returns is found again within seconds.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class Outcome(enum.Enum):
    OK = "ok"
    REFUSED = "refused"  # the server answered without running it (10110)
    UNREACHED = "unreached"  # the call never reached a server
    LOST = "lost"  # the connection went away during the call: it may have run
    FAILED = "failed"  # a final answer (or the deadline): not retried


def classify_status(code: grpc.StatusCode, details: str | None) -> Outcome:
    """What a gRPC failure says about whether the call ran."""
    if code == grpc.StatusCode.UNAVAILABLE:
        text = (details or "").lower()
        # an HTTP/2 stream refused (RST_STREAM REFUSED_STREAM, code 7) was not processed, by the
        # protocol's own rule: a server closing its port, or a proxy in front of one
        unreached = "failed to connect" in text or "rst_stream with error code 7" in text
        return Outcome.UNREACHED if unreached else Outcome.LOST
    if code == grpc.StatusCode.CANCELLED:
        return Outcome.LOST
    return Outcome.FAILED


def classify_code(code: int) -> Outcome:
    """What an AIGes answer code says: 0 is done, 10110 was refused, anything else is final."""
    if code == 0:
        return Outcome.OK
    return Outcome.REFUSED if code in REFUSED_CODES else Outcome.FAILED


def may_retry(outcome: Outcome, idempotent: bool) -> bool:
    """The retry rule: never-ran failures always; may-have-run ones only for idempotent calls."""
    if outcome in (Outcome.REFUSED, Outcome.UNREACHED):
        return True
    return outcome is Outcome.LOST and idempotent


@dataclass(frozen=True)
class Entry:
    """One provider as the registry lists it: its JSON value and the lease its key is bound to."""

    value: Mapping[str, Any]
    lease: int = 0


class ProviderSource(Protocol):
    def entries(self) -> dict[str, Entry]:
        """The providers listed now (the last known ones while the registry is unreachable)."""


@dataclass
class Peer:
    address: str
    outstanding: int = 0
    ewma_s: float | None = None
    down_since: float | None = None
    down_reason: str = ""
    down_lease: int = 0
    absent_since: float | None = None
    cool_until: float = 0.0


Event = Callable[[str, str, str], None]
"""``on_event(kind, address, reason)``: "down" or "up", as the client marks a provider."""


class Balancer:
    """Thread-safe provider choice over a ``ProviderSource`` (see the module doc)."""

    def __init__(
        self, providers: ProviderSource, *, rng: random.Random | None = None, on_event: Event | None = None
    ) -> None:
        self.providers = providers
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.peers: dict[str, Peer] = {}
        self._lock = threading.Lock()

    def _peer(self, address: str) -> Peer:
        peer = self.peers.get(address)
        if peer is None:
            peer = self.peers[address] = Peer(address)
        return peer

    def choose(self, exclude: Iterable[str] = ()) -> str | None:
        """The provider for the next call, outside ``exclude``; None when the registry lists none."""
        skip = set(exclude)
        entries = self.providers.entries()
        events: list[tuple[str, str, str]] = []
        with self._lock:
            serving: list[Peer] = []
            free: list[Peer] = []
            for address, entry in entries.items():
                if address in skip or entry.value.get("health") != "SERVING":
                    continue
                peer = self._peer(address)
                peer.absent_since = None
                if peer.down_since is not None and entry.lease and entry.lease != peer.down_lease:
                    self._up(peer, "registered again", events)
                serving.append(peer)
                if entry.value.get("licences_free", 1) > 0:
                    free.append(peer)
            candidates = free or serving
            up = [peer for peer in candidates if peer.down_since is None]
            now = time.monotonic()
            warm = [peer for peer in up if peer.cool_until <= now]
            if warm or up:
                choice = self._two_choices(warm or up)
            elif candidates:  # every one has failed: try the one that failed longest ago
                choice = min(candidates, key=lambda p: p.down_since or 0.0)
            else:
                choice = None
            self._note_absent(entries)
        self._emit(events)
        return choice.address if choice is not None else None

    def _two_choices(self, peers: list[Peer]) -> Peer:
        if len(peers) == 1:
            return peers[0]
        first, second = self.rng.sample(peers, 2)
        if first.outstanding != second.outstanding:
            return first if first.outstanding < second.outstanding else second
        fast, slow = sorted((first.ewma_s or 0.0, second.ewma_s or 0.0))
        if slow > fast * LATENCY_TIE_FACTOR:  # clearly slower: the tie goes to the faster one
            return first if (first.ewma_s or 0.0) == fast else second
        return first  # as good as each other: the draw decides

    def _note_absent(self, entries: Mapping[str, Entry]) -> None:
        now = time.monotonic()
        for address, peer in list(self.peers.items()):
            if address in entries:
                continue
            if peer.absent_since is None:
                peer.absent_since = now
            elif peer.outstanding == 0 and now - peer.absent_since > PRUNE_AFTER_S:
                del self.peers[address]

    def begin(self, address: str) -> float:
        """A call is sent to ``address``; returns its start time for ``end``."""
        with self._lock:
            self._peer(address).outstanding += 1
        return time.monotonic()

    def end(self, address: str, started: float, outcome: Outcome) -> None:
        """The call ended: its latency feeds the average when it was answered; a call that did
        not reach the server, or lost its connection, marks the provider down."""
        events: list[tuple[str, str, str]] = []
        with self._lock:
            peer = self._peer(address)
            peer.outstanding = max(peer.outstanding - 1, 0)
            if outcome is Outcome.REFUSED:
                peer.cool_until = time.monotonic() + REFUSED_COOL_S
            elif outcome in (Outcome.OK, Outcome.FAILED):
                latency = time.monotonic() - started
                peer.ewma_s = latency if peer.ewma_s is None else peer.ewma_s + EWMA_ALPHA * (latency - peer.ewma_s)
            elif outcome in (Outcome.UNREACHED, Outcome.LOST):
                self._down(peer, "unreachable" if outcome is Outcome.UNREACHED else "connection lost", events)
        self._emit(events)

    def mark_down(self, address: str, reason: str) -> None:
        events: list[tuple[str, str, str]] = []
        with self._lock:
            self._down(self._peer(address), reason, events)
        self._emit(events)

    def mark_up(self, address: str, reason: str) -> None:
        events: list[tuple[str, str, str]] = []
        with self._lock:
            peer = self.peers.get(address)
            if peer is not None and peer.down_since is not None:
                self._up(peer, reason, events)
        self._emit(events)

    def is_down(self, address: str) -> bool:
        with self._lock:
            peer = self.peers.get(address)
            return peer is not None and peer.down_since is not None

    def outstanding(self) -> dict[str, int]:
        with self._lock:
            return {address: peer.outstanding for address, peer in self.peers.items()}

    def _down(self, peer: Peer, reason: str, events: list[tuple[str, str, str]]) -> None:
        if peer.down_since is not None:
            return
        entry = self.providers.entries().get(peer.address)
        peer.down_since = time.monotonic()
        peer.down_reason = reason
        peer.down_lease = entry.lease if entry is not None else 0
        events.append(("down", peer.address, reason))

    def _up(self, peer: Peer, reason: str, events: list[tuple[str, str, str]]) -> None:
        peer.down_since = None
        peer.down_reason = ""
        peer.ewma_s = None  # a host that comes back is measured afresh
        events.append(("up", peer.address, reason))

    def _emit(self, events: list[tuple[str, str, str]]) -> None:
        if self.on_event is not None:
            for kind, address, reason in events:
                self.on_event(kind, address, reason)


class StaticProviders:
    """A fixed provider list, all SERVING (for tests and for clients without a registry)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self._entries = {address: Entry({"address": address, "health": "SERVING"}) for address in addresses}

    def entries(self) -> dict[str, Entry]:
        return dict(self._entries)
