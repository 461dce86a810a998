"""What xtest shows while it runs: the calls that ended in the last few seconds.

The closing report's percentiles are over the whole run (HDR histograms in ``Recorder``); a live
view needs the recent ones, so that a server that slows down or starts failing shows it at once
rather than diluted by everything before. ``RecentCalls`` keeps the calls of the last
``seconds`` and answers throughput, errors by code and p50/p99 over them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class CallObserver(Protocol):
    def observe(self, code: str | None, latency_s: float, first_s: float | None, retries: int) -> None:
        """One call ended: its code (None for success), latency, first-result latency (sessions)
        and how many attempts before the last one failed (``--etcd``)."""


@dataclass(frozen=True)
class Recent:
    """Figures over the last ``span_s`` seconds (less at the start of a run)."""

    span_s: float
    calls: int
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def throughput_rps(self) -> float:
        return self.calls / self.span_s if self.span_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted values (as HDR histograms report: a value that
    was seen, not an interpolation)."""
    rank = max(int(q * len(ordered) + 0.999999) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


class RecentCalls:
    """The calls that ended in the last ``seconds`` (a ``CallObserver``)."""

    def __init__(self, seconds: float = 5.0, clock: Callable[[], float] = time.perf_counter) -> None:
        if seconds <= 0:
            raise ValueError("the window must be above 0 seconds")
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self._calls: deque[tuple[float, float, str | None]] = deque()

    def observe(self, code: str | None, latency_s: float, first_s: float | None, retries: int) -> None:
        now = self.clock()
        self._calls.append((now, latency_s, code))
        self._forget(now)

    def _forget(self, now: float) -> None:
        horizon = now - self.seconds
        calls = self._calls
        while calls and calls[0][0] < horizon:
            calls.popleft()

    def figures(self) -> Recent:
        now = self.clock()
        self._forget(now)
        span = min(self.seconds, now - self.started)
        if not self._calls:
            return Recent(span, 0)
        latencies = sorted(latency for _, latency, _ in self._calls)
        errors = Counter(code for _, _, code in self._calls if code is not None)
        return Recent(
            span,
            len(latencies),
            dict(sorted(errors.items())),
            quantile(latencies, 0.5) * 1000,
            quantile(latencies, 0.99) * 1000,
        )
