"""The one path every front's requests take for errors, metrics and logs.

A front runs each request through ``FrontCalls.run``: the request is timed
(``aiges_request_duration_seconds``), counted by op and AIGes code (``aiges_requests_total``), and
an ``AigesError`` it raises is logged once (one warning with sid, op, code and ms) and turned
into the front's wire form by the front's own ``wire_error``; the web console's live panel reads
its calls per second and latency from the same place (``recent_calls.RECENT``). Streams, whose
errors come while they run, record each failure with ``failed`` and each ended stream with ``done``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from prometheus_client import Histogram

from aiges.errors import AigesError
from aiges.metrics import REQUEST, REQUESTS
from aiges.server.recent_calls import RECENT

T = TypeVar("T")
log = structlog.get_logger("aiges.calls")


class FrontCalls:
    def __init__(self, front: str, debug: bool = False) -> None:
        self.front = front
        self.debug = debug
        self._counters: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Histogram] = {}

    async def run(
        self, op: str, sid: str, body: Awaitable[T], wire_error: Callable[..., T | Awaitable[T]], *context: Any
    ) -> T:
        """What ``body`` (a request's coroutine) answers; an AigesError it raises becomes
        ``wire_error(error, *context)``, which may also be a coroutine (a gRPC abort). No closure
        is made per request: the hot path pays for nothing it does not use."""
        started = time.perf_counter()
        try:
            answer = await body
        except AigesError as exc:
            self.failed(op, sid, exc, started)
            self.done(op, exc.code, started)
            RECENT.record(started, exc.code)
            reply = wire_error(exc, *context)
            return await reply if inspect.isawaitable(reply) else reply
        self.done(op, 0, started)
        RECENT.record(started, 0)
        if self.debug:
            log.debug(
                "call", front=self.front, op=op, sid=sid, code=0, ms=round((time.perf_counter() - started) * 1000, 3)
            )
        return answer

    def failed(self, op: str, sid: str, error: AigesError, started: float | None = None) -> None:
        """Log a failure (a request's, or one inside a stream); ``started`` adds its duration."""
        extra = {} if started is None else {"ms": round((time.perf_counter() - started) * 1000, 3)}
        log.warning("call failed", front=self.front, op=op, sid=sid, code=error.code, error=error.message, **extra)

    def done(self, op: str, code: int, started: float | None = None) -> None:
        """Count an answered request (or an ended stream) and, with ``started``, time it."""
        counter = self._counters.get((op, code))
        if counter is None:
            counter = self._counters[(op, code)] = REQUESTS.labels(self.front, op, str(code))
        counter.inc()
        if started is not None:
            duration = self._durations.get(op)
            if duration is None:
                duration = self._durations[op] = REQUEST.labels(self.front, op)
            duration.observe(time.perf_counter() - started)
