"""The one path every front's requests take for errors, metrics and logs.

A front runs each request through ``FrontCalls.run``: the request is timed
(``aiges_request_duration_seconds``), counted by op, AIGes code and the service it was routed to
(``aiges_requests_total``), and
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
from aiges.server.recent_calls import RECENT, of_service

T = TypeVar("T")
log = structlog.get_logger("aiges.calls")


def record(started: float, code: int, service: str) -> None:
    """A one-shot call in the console's recent calls: the server's and its service's."""
    now = time.perf_counter()
    RECENT.record(started, code, now)
    if service:
        of_service(service).record(started, code, now)


class FrontCalls:
    def __init__(self, front: str, debug: bool = False) -> None:
        self.front = front
        self.debug = debug
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    async def run(
        self,
        op: str,
        sid: str,
        body: Awaitable[T],
        wire_error: Callable[..., T | Awaitable[T]],
        *context: Any,
        service: str = "",
    ) -> T:
        """What ``body`` (a request's coroutine) answers; an AigesError it raises becomes
        ``wire_error(error, *context)``, which may also be a coroutine (a gRPC abort). No closure
        is made per request: the hot path pays for nothing it does not use. ``service``: the
        service the request was routed to, for the metrics' ``service`` label."""
        started = time.perf_counter()
        try:
            answer = await body
        except AigesError as exc:
            self.failed(op, sid, exc, started, service)
            self.done(op, exc.code, started, service)
            record(started, exc.code, service)
            reply = wire_error(exc, *context)
            return await reply if inspect.isawaitable(reply) else reply
        self.done(op, 0, started, service)
        record(started, 0, service)
        if self.debug:
            log.debug(
                "call",
                front=self.front,
                op=op,
                sid=sid,
                service=service,
                code=0,
                ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return answer

    def failed(self, op: str, sid: str, error: AigesError, started: float | None = None, service: str = "") -> None:
        """Log a failure (a request's, or one inside a stream); ``started`` adds its duration."""
        extra: dict[str, Any] = {} if started is None else {"ms": round((time.perf_counter() - started) * 1000, 3)}
        if service:
            extra["service"] = service
        log.warning("call failed", front=self.front, op=op, sid=sid, code=error.code, error=error.message, **extra)

    def done(self, op: str, code: int, started: float | None = None, service: str = "") -> None:
        """Count an answered request (or an ended stream) and, with ``started``, time it (and
        count it in the console's recent calls)."""
        counter = self._counters.get((service, op, code))
        if counter is None:
            counter = self._counters[(service, op, code)] = REQUESTS.labels(self.front, op, str(code), service)
        counter.inc()
        if started is not None:
            duration = self._durations.get((service, op))
            if duration is None:
                duration = self._durations[(service, op)] = REQUEST.labels(self.front, op, service)
            duration.observe(time.perf_counter() - started)
