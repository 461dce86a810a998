"""The last calls this server answered, for the web console's live panel: calls per second and
latency percentiles over a rolling window, read as JSON (``/console/status.json``).

Every front's one-shot calls are recorded by ``FrontCalls.run`` (``aiges.server.observe``), so
the figures cover xsf, OIP and HTTP alike. Recording is one append to a bounded deque (no lock:
the fronts run in one event loop, and ``deque.append`` is atomic anyway); the figures are worked
out only when the panel asks. Prometheus keeps the long-term histograms; this is the last few
seconds, exact, without parsing exposition text.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

WINDOW_S = 10.0
"""How far back the panel's figures look."""
KEPT = 8192
"""Calls kept at most: at a higher rate the window shrinks to the time these span."""


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (not empty)."""
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


class RecentCalls:
    def __init__(self, kept: int = KEPT) -> None:
        self._calls: deque[tuple[float, float, bool]] = deque(maxlen=kept)

    def record(self, started: float, code: int, now: float | None = None) -> None:
        """One answered call, timed from ``started`` (``time.perf_counter()``)."""
        at = time.perf_counter() if now is None else now
        self._calls.append((at, at - started, code != 0))

    def summary(self, window_s: float = WINDOW_S, now: float | None = None) -> dict[str, Any]:
        """``calls_per_s``, ``errors_per_s``, ``p50_ms``, ``p99_ms`` (None without calls) and
        ``calls`` over the last ``window_s`` seconds (fewer when more calls came than are kept)."""
        at = time.perf_counter() if now is None else now
        since = at - window_s
        recent = [call for call in list(self._calls) if call[0] >= since]
        span = window_s
        if len(recent) == self._calls.maxlen and recent:
            span = max(at - recent[0][0], 1e-3)
        durations = sorted(duration for _, duration, _ in recent)
        errors = sum(1 for *_, failed in recent if failed)
        return {
            "window_s": round(span, 3),
            "calls": len(recent),
            "calls_per_s": round(len(recent) / span, 2),
            "errors_per_s": round(errors / span, 2),
            "p50_ms": round(percentile(durations, 0.50) * 1000, 3) if durations else None,
            "p99_ms": round(percentile(durations, 0.99) * 1000, 3) if durations else None,
        }


RECENT = RecentCalls()
"""The whole server's calls."""

_BY_SERVICE: dict[str, RecentCalls] = {}


def of_service(name: str) -> RecentCalls:
    """One service's calls (its console page's panel)."""
    recent = _BY_SERVICE.get(name)
    if recent is None:
        recent = _BY_SERVICE[name] = RecentCalls(KEPT // 4)
    return recent


"""The server's calls (one server per process)."""
