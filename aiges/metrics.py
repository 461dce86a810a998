"""Prometheus metrics, named by Prometheus conventions (``aiges_`` prefix, base units).

Latencies are histograms in seconds whose buckets start at 10 microseconds, so the per-leg
overhead of a call (queue, IPC to the worker, wrapper exec, IPC back) is visible at the
resolution it lives at, as Triton reports it.

Workers never touch these: they return their timestamps with each reply and the server records
everything, so there is one process to scrape and nothing to aggregate across processes. Gauges
(licences, sessions, workers, GPUs) are read from the server's state when scraped, at no cost per
call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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
    "Time from a request's arrival to its reply, by front, op and service (empty: not routed to one)",
    ["front", "op", "service"],
    registry=REGISTRY,
    buckets=LATENCY_BUCKETS,
)


REQUESTS = Counter(
    "aiges_requests",
    "Requests answered, by front, op, AIGes code (0 = success) and service (empty: not routed to one)",
    ["front", "op", "code", "service"],
    registry=REGISTRY,
)

BATCH_SIZE = Histogram(
    "aiges_batch_size",
    "Calls served by one wrapperBatchExec",
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


USAGE = Counter(
    "aiges_usage",
    "Units the wrapper metered (meter_custom, meter_custom_ex, callback_metric), by the request's app id",
    ["app_id", "channel", "key"],
    registry=REGISTRY,
)

WRAPPER_METRIC = Summary(
    "aiges_wrapper_metric",
    "Values the wrapper reported with metrics_log, by metric name and the labels it gave (k=v,...)",
    ["name", "labels"],
    registry=REGISTRY,
)

AUTH_REFUSED = Counter(
    "aiges_auth_refused",
    "Requests refused for their credentials or rights ([auth] mode hmac), by front and AIGes code",
    ["front", "code"],
    registry=REGISTRY,
)

APP_CALLS = Counter(
    "aiges_app_calls",
    "One-shot calls and session opens per app ([auth] mode hmac), by AIGes code: 0 admitted, "
    "10140 over the app's rate, 10141 over its sessions",
    ["app_id", "code"],
    registry=REGISTRY,
)

APP_SESSIONS = Gauge(
    "aiges_app_sessions_open",
    "Sessions open per app ([auth] mode hmac); [[app]] max_sessions limits them",
    ["app_id"],
    registry=REGISTRY,
)

REGISTERED = Gauge(
    "aiges_registry_registered",
    "1 while the server's entry is in its registry (kept alive on its lease), 0 while it is lost and "
    "being retried or after deregistering; absent with [registry] backend none",
    ["backend"],
    registry=REGISTRY,
)

OTHER = "_other"


class BoundedLabels:
    """Label values that come from outside the server (app ids from requests, names from the
    wrapper): at most ``limit`` distinct sets get a series of their own, the rest share one
    labelled "_other", so no client can grow the metrics without bound."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._seen: set[tuple[str, ...]] = set()

    def __call__(self, *values: str) -> tuple[str, ...]:
        if values in self._seen:
            return values
        if len(self._seen) < self.limit:
            self._seen.add(values)
            return values
        return tuple(OTHER for _ in values)


class LegRecorder:
    """Bound histogram children per call kind, so the hot path does no label lookups."""

    def __init__(self) -> None:
        self._children: dict[str, tuple[Histogram, ...]] = {}

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


class StateCollector:
    """Scrape-time metrics from a function returning the server's state (see ``App.snapshot``)
    and, where GPUs exist, from NVML; GPU metrics are absent, not zero, without one."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], gpu_stats: Callable[[], list[dict[str, Any]]]) -> None:
        self.snapshot = snapshot
        self.gpu_stats = gpu_stats

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self.snapshot()
        gauges = (
            ("aiges_licences", "Licences: calls and sessions served at once ([fc] max)", state["licences_total"]),
            ("aiges_licences_used", "Licences held by running calls and open sessions", state["licences_used"]),
            ("aiges_sessions_open", "Open streaming sessions", state["sessions"]),
            ("aiges_inflight_calls", "Calls being handled right now", state["inflight"]),
            ("aiges_workers", "Worker processes configured", state["workers"]),
            ("aiges_workers_up", "Worker processes up (wrapperInit done)", state["workers_ready"]),
            ("aiges_serving", "1 while health is SERVING", 1 if state["health"] == "SERVING" else 0),
            ("aiges_resources_loaded", "Personalised resources loaded (AILoad)", state.get("resources", 0)),
            ("aiges_resources_bytes", "Bytes of the personalised resources loaded", state.get("resources_bytes", 0)),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        yield CounterMetricFamily(
            "aiges_worker_restarts",
            "Worker processes restarted after a crash, hang or kill",
            value=state["worker_restarts"],
        )
        reload = state.get("reload")
        if reload is not None:
            yield GaugeMetricFamily(
                "aiges_worker_generation", "Generation of the serving workers (1, +1 per reload)", reload["generation"]
            )
            yield GaugeMetricFamily(
                "aiges_workers_retiring",
                "Old workers a reload replaced, finishing their calls and sessions",
                reload["retiring_workers"],
            )
            reloads = CounterMetricFamily(
                "aiges_reloads", "Reloads (aiges reload, SIGHUP), by result", labels=["result"]
            )
            for result, count in reload["counts"].items():
                reloads.add_metric([result], count)
            yield reloads
        services = state.get("services") or []
        if services:
            yield from service_gauges(services)
        devices = self.gpu_stats()
        if devices and services:
            yield from gpu_service_gauges(devices, services)
        if devices:
            utilization = GaugeMetricFamily(
                "aiges_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=["gpu", "name"]
            )
            used = GaugeMetricFamily("aiges_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu", "name"])
            total = GaugeMetricFamily("aiges_gpu_memory_total_bytes", "GPU memory (NVML)", labels=["gpu", "name"])
            for device in devices:
                labels = [str(device["index"]), device["name"]]
                utilization.add_metric(labels, device["utilization"])
                used.add_metric(labels, device["memory_used"])
                total.add_metric(labels, device["memory_total"])
            yield from (utilization, used, total)


SERVICE_GAUGES = (
    ("aiges_service_licences", "A service's licences ([fc] max, its own)", "licences_total"),
    (
        "aiges_service_licences_used",
        "A service's licences held by its running calls and open sessions",
        "licences_used",
    ),
    ("aiges_service_sessions_open", "A service's open sessions", "sessions"),
    ("aiges_service_inflight_calls", "A service's calls being handled right now", "inflight"),
    ("aiges_service_workers", "A service's worker processes", "workers"),
    ("aiges_service_workers_up", "A service's worker processes up (wrapperInit done)", "workers_ready"),
)


def service_gauges(services: list[dict[str, Any]]) -> Iterator[Metric]:
    """Each service's own figures, by its name (``state``: serving, loading, retired)."""
    for name, documentation, key in SERVICE_GAUGES:
        family = GaugeMetricFamily(name, documentation, labels=["service", "state"])
        for service in services:
            family.add_metric([service["name"], service["state"]], service[key])
        yield family
    serving = GaugeMetricFamily(
        "aiges_service_serving", "1 while the service's health is SERVING", labels=["service", "state"]
    )
    for service in services:
        serving.add_metric([service["name"], service["state"]], 1 if service["health"] == "SERVING" else 0)
    yield serving


def gpu_service_gauges(devices: list[dict[str, Any]], services: list[dict[str, Any]]) -> Iterator[Metric]:
    """Which services' workers are on each GPU, and each worker's memory there (where NVML
    tells it: the processes it lists on the device)."""
    by_gpu = {str(device["index"]): device for device in devices}
    workers = GaugeMetricFamily(
        "aiges_gpu_service_workers", "Workers of a service on a GPU (NVML index)", labels=["gpu", "service"]
    )
    memory = GaugeMetricFamily(
        "aiges_worker_gpu_memory_bytes",
        "A worker's memory on its GPU (NVML's per-process figure)",
        labels=["gpu", "service", "worker"],
    )
    for service in services:
        counts: dict[str, int] = {}
        for index, (pid, gpu) in enumerate(zip(service["worker_pids"], service["worker_gpus"], strict=False)):
            device = by_gpu.get(gpu)
            if device is None:
                continue
            counts[gpu] = counts.get(gpu, 0) + 1
            used = device.get("processes", {}).get(pid)
            if used is not None:
                memory.add_metric([gpu, service["name"], str(index)], used)
        for gpu, count in counts.items():
            workers.add_metric([gpu, service["name"]], count)
    yield from (workers, memory)
