"""``aiges xtest --prometheus [HOST:]PORT``: xtest's own figures in Prometheus' format, while it runs.

A load test scraped by the same Prometheus as the servers it loads puts what the callers saw next
to what the servers counted: the client's latency (network, queueing before the server's clock
starts) against the server's ``aiges_request_duration_seconds``, and errors the server never saw
(``grpc:UNAVAILABLE``, ``client:...``) next to those it answered. The latency buckets are the
server's, so the two histograms compare bucket by bucket.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from aiges.metrics import LATENCY_BUCKETS, BoundedLabels


def code_label(code: str | None) -> str:
    """``"0"`` for a success, the AIGes code or ``grpc:STATUS``, and for the client's own failures
    ``client:`` with the exception's type only (its message would make a series per message)."""
    if code is None:
        return "0"
    if code.startswith("client:"):
        return code.split(": ", 1)[0]
    return code


class XtestMetrics:
    """The figures (a ``CallObserver``), in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aiges_xtest_requests",
            "Requests xtest completed, by AIGes code (0 = success; grpc:STATUS and client:Type for failures "
            "that carried no AIGes code)",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aiges_xtest_latency_seconds",
            "Latency of each request as xtest saw it (open loop: from its scheduled start)",
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.first = Histogram(
            "aiges_xtest_first_result_seconds",
            "Time from a session's start to its first result",
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.retried = Counter(
            "aiges_xtest_retried",
            "Requests that were tried again on another provider (--etcd)",
            registry=self.registry,
        )
        self.started = Gauge("aiges_xtest_start_time_seconds", "When the run began (Unix time)", registry=self.registry)
        self.started.set(time.time())
        self._codes = BoundedLabels(limit=100)
        self._by_code: dict[str, Any] = {}  # the counter's child per code: no label lookup per call
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe(self, code: str | None, latency_s: float, first_s: float | None, retries: int) -> None:
        label = code_label(code)
        counter = self._by_code.get(label)
        if counter is None:
            counter = self._by_code[label] = self.requests.labels(*self._codes(label))
        counter.inc()
        self.latency.observe(latency_s)
        if first_s is not None:
            self.first.observe(first_s)
        if retries:
            self.retried.inc()

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: a free one); returns the port. Raises
        OSError when it cannot listen."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` (every interface) or ``HOST:PORT``; raises ValueError."""
    host, _, port = text.rpartition(":")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]") or "0.0.0.0", number
