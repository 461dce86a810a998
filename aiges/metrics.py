"""Prometheus metrics, named by Prometheus conventions (``aiges_`` prefix, base units).

Latencies are histograms in seconds whose buckets start at 10 microseconds, so the per-leg
overhead of a call (queue, IPC to the worker, wrapper exec, IPC back) is visible at the
resolution it lives at, as Triton reports it.

Workers never touch these: they return their timestamps with each reply and the server records
everything, so there is one process to scrape and nothing to aggregate across processes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

LATENCY_BUCKETS = tuple(round(10e-6 * 2**i, 7) for i in range(22))  # 10 us .. ~21 s

REGISTRY = CollectorRegistry(auto_describe=True)

LEG = Histogram(
    "aiges_call_leg_seconds",
    "Time a worker call spends in each leg: queue (waiting to reach the wrapper), ipc_in (to the "
    "worker), exec (the wrapper), ipc_out (back to the server)",
    ["kind", "leg"],
    registry=REGISTRY,
    buckets=LATENCY_BUCKETS,
)
REQUEST = Histogram(
    "aiges_request_duration_seconds",
    "Time from a request's arrival to its reply, by front and op",
    ["front", "op"],
    registry=REGISTRY,
    buckets=LATENCY_BUCKETS,
)


BATCH_SIZE = Histogram(
    "aiges_batch_size",
    "Calls served by one wrapperBatchExec",
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class LegRecorder:
    """Bound histogram children per call kind, so the hot path does no label lookups."""

    def __init__(self) -> None:
        self._children: dict[str, tuple] = {}

    def record(self, kind: str, queue: float, ipc_in: float, exec_: float, ipc_out: float) -> None:
        children = self._children.get(kind)
        if children is None:
            children = tuple(LEG.labels(kind, leg) for leg in ("queue", "ipc_in", "exec", "ipc_out"))
            self._children[kind] = children
        queue_h, in_h, exec_h, out_h = children
        queue_h.observe(max(queue, 0.0))
        in_h.observe(max(ipc_in, 0.0))
        exec_h.observe(max(exec_, 0.0))
        out_h.observe(max(ipc_out, 0.0))


LEGS = LegRecorder()
