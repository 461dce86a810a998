"""The server's state as cmdserver ``status`` (``aiges status``), the console and ``/metrics``
read it: the daemon's figures (its services' summed), and each service's own under
``services``. With one service the daemon's figures are that service's, as they always were.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aiges.server.health_service import Health
from aiges.server.service import Service
from aiges.server.services import Services

SUMMED = (
    "workers",
    "workers_ready",
    "worker_restarts",
    "licences_total",
    "licences_used",
    "licences_free",
    "sessions",
    "inflight",
    "resources",
    "resources_bytes",
)


def service_snapshot(service: Service, health: Health) -> dict[str, Any]:
    return {**service.snapshot(), "health": health.service_status(service.name) if service.name else "NOT_SERVING"}


def server_snapshot(services: Services, health: Health, address: str, started: float) -> dict[str, Any]:
    members = list(services)
    every = [service_snapshot(service, health) for service in services.everything()]
    served = every[: len(members)]
    one = served[0] if len(served) == 1 and not services.listed else None
    state: dict[str, Any] = {
        "address": address,
        "service": one["name"] if one is not None else ",".join(s["name"] for s in served),
        "version": one["version"] if one is not None else "",
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - started, 1),
        "phase": health.phase.value,
        "health": health.status_name(),
        **{key: sum(s[key] for s in served) for key in SUMMED},
        "worker_pids": [pid for s in served for pid in s["worker_pids"]],
        "live": all(s["live"] for s in every),
        "gpus": [gpu for s in served for gpu in s["gpus"]],
        "labels": one["labels"] if one is not None else {},
        "lb_type": one["lb_type"] if one is not None else "",
        "reload": one["reload"] if one is not None else summed_reloads([s["reload"] for s in served]),
        "services": every,
    }
    return state


def summed_reloads(reloads: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {"ok": 0, "failed": 0}
    for reload in reloads:
        for result, count in reload["counts"].items():
            counts[result] = counts.get(result, 0) + count
    return {
        "generation": max((r["generation"] for r in reloads), default=1),
        "reloading": any(r["reloading"] for r in reloads),
        "retiring_workers": sum(r["retiring_workers"] for r in reloads),
        "retiring_pids": [pid for r in reloads for pid in r["retiring_pids"]],
        "last": None,
        "counts": counts,
    }
