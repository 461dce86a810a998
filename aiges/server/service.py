"""One service: a wrapper served with its own engine (admission, licences, sessions, worker pool),
its model as the fronts see it, its reloader, and what it reports for health, status and the
registry. A daemon runs one (the single form) or several (``[[service]]``); nothing is shared
between two services' engines, so one's crash, hang or reload never touches another's workers
or calls.

A service that is replaced or removed while serving is *retired*: new calls and sessions no
longer reach it (a replaced one's go to its successor, ``current``), while the calls and
sessions it already runs finish on it; then it stops.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from typing import Any

import structlog

from aiges.config import Config, ServiceSpec
from aiges.engine.admission import Admission
from aiges.engine.context import RequestContext
from aiges.engine.engine import Engine, EngineSettings
from aiges.engine.messages import Frame, Output
from aiges.engine.pool import PoolSettings
from aiges.engine.sessions import Session
from aiges.errors import AigesError, ErrorCode
from aiges.gpu import plan_workers
from aiges.server.model import ModelSource
from aiges.server.reloader import Reloader, worker_settings
from aiges.server.reports import WrapperReports

log = structlog.get_logger("aiges.server")

LOAD_STEPS = 20


class State(enum.Enum):
    LOADING = "loading"
    """Its workers are starting (or, added while serving, it waits for its self-test)."""
    SERVING = "serving"
    RETIRED = "retired"
    """Replaced or removed: it finishes what it runs, then stops."""
    STOPPED = "stopped"


def engine_settings(config: Config, spec: ServiceSpec, peer_addr: str, gpus: list[str]) -> EngineSettings:
    worker = spec.worker
    pool = PoolSettings(
        worker=worker_settings(config, peer_addr, spec),
        gpus=gpus,
        exec_timeout_ms=worker.exec_timeout_ms,
        shm_bytes=worker.shm_mb << 20,
        threads=worker.threads,
        ready_timeout_ms=worker.ready_timeout_ms,
        start_failures=worker.start_failures,
        resource_count=spec.resources.max_count,
        resource_bytes=spec.resources.max_mb << 20,
    )
    return EngineSettings(
        pool=pool,
        licences=spec.fc.max,
        session_ttl_ms=spec.fc.ttl,
        expiry_scan_ms=spec.fc.roll,
        session_output_bytes=spec.fc.session_output_kb << 10,
        default_deadline_ms=spec.fc.deadline_ms,
        log_workers=config.log.level == "debug",
    )


class Service:
    def __init__(
        self,
        spec: ServiceSpec,
        config: Config,
        peer_addr: str,
        *,
        admission: Admission | None = None,
        reread: Callable[[], Config],
        serving: Callable[[], bool],
    ) -> None:
        """``admission``: where its licences and the apps' limits are counted (default: in this
        process); ``reread``: the config file loaded again, for a reload; ``serving``: whether
        the daemon serves (not starting, not draining)."""
        self.spec = spec
        self.config = config
        self.gpus = plan_workers(spec.worker.gpus, spec.worker.count)
        self.min_ready = spec.worker.min_ready or len(self.gpus)
        self.on_labels: Callable[[Service], None] = lambda service: None
        """Its wrapper changed its load-balancer labels (the registry entry follows)."""
        self.reports = WrapperReports(labels_changed=lambda: self.on_labels(self))
        settings = engine_settings(config, spec, peer_addr, self.gpus)
        self.engine = Engine(settings, self.reports.handle, admission=admission)
        listed = config.listed
        self.models = ModelSource(
            self.engine.info, config.service_name, spec.name if listed else "", spec.version if listed else ""
        )
        self.reloader = Reloader(self.engine, reread, config.aiges.drain_timeout_ms, serving, spec if listed else None)
        self.state = State.LOADING
        self.successor: Service | None = None
        self._name = spec.name
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    # -- who it is ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Its name: the entry's, else its wrapper's serviceId once a worker has loaded it ("" before)."""
        if not self._name:
            info = self.engine.info()
            if info is not None:
                self._name = info.service_id
        return self._name

    @property
    def version(self) -> str:
        info = self.engine.info()
        return self.spec.version or (info.version if info is not None else "")

    @property
    def label(self) -> str:
        return self.name or self.spec.label

    def ready(self) -> bool:
        """Serving, with at least ``[worker] min_ready`` workers up (default: all)."""
        return self.state is State.SERVING and self.engine.status().workers_ready >= self.min_ready

    # -- the calls ---------------------------------------------------------------------------------

    def current(self) -> Service:
        """Where a new call for this service goes: itself, or once retired, its successor (a
        removed service has none: 10404)."""
        service = self
        while service.state is State.RETIRED:
            if service.successor is None:
                raise AigesError(ErrorCode.UNKNOWN_SERVICE, f"service {service.label!r} was removed")
            service = service.successor
        return service

    async def once(self, context: RequestContext, frame: Frame) -> Output:
        """A one-shot call on the current version (admitted there before anything awaits)."""
        return await self.current().engine.once(context, frame)

    async def open(self, context: RequestContext, frame: Frame, *, ordered: bool = False) -> tuple[Engine, Session]:
        """A new session on the current version, and the engine that holds it."""
        engine = self.current().engine
        return engine, await engine.open(context, frame, ordered=ordered)

    # -- life --------------------------------------------------------------------------------------

    async def start(self, on_change: Callable[[], None]) -> None:
        """Start the workers (raises WorkerInitError); ``on_change`` runs whenever its workers'
        state changes (health follows it)."""
        self._watch = asyncio.create_task(self._follow(on_change))
        await self.engine.start()

    async def _follow(self, on_change: Callable[[], None]) -> None:
        changed = self.engine.changed
        while True:
            await changed.wait()
            changed.clear()
            on_change()

    def retire(self, successor: Service | None) -> None:
        self.successor = successor
        self.state = State.RETIRED

    async def finish(self, timeout_s: float) -> bool:
        """A retired service: wait for its calls and sessions to end (at most ``timeout_s``),
        then stop it. False when some were still running (they are cut)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.engine.idle() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        idle = self.engine.idle()
        await self.stop()
        return idle

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop its workers (once: a second call returns at once)."""
        if self._stopping:
            return
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        self.state = State.STOPPED
        await self.engine.stop(timeout_s)

    # -- what it reports --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        state = self.engine.status()
        return {
            "name": self.name,
            "version": self.version,
            "wrapper": str(self.spec.wrapper_path),
            "state": self.state.value,
            "ready": self.ready(),
            "workers": len(state.workers),
            "workers_ready": state.workers_ready,
            "worker_pids": [w.pid for w in state.workers],
            "worker_gpus": [w.gpu for w in state.workers],
            "worker_restarts": state.worker_restarts,
            "live": state.live,
            "gpus": [w.gpu for w in state.workers if w.gpu],
            "licences_total": state.licences_total,
            "licences_used": state.licences_used,
            "licences_free": state.licences_free,
            "sessions": state.sessions,
            "inflight": state.inflight,
            "labels": dict(self.reports.lb_labels),
            "lb_type": self.engine.lb_type,
            "resources": state.resources,
            "resources_bytes": state.resources_bytes,
            "reload": self.reloader.state(),
        }

    def registry_value(self, address: str, phase: str, health: str) -> dict[str, Any]:
        """Its registry entry's value: only what clients balance on, so that an idle service
        writes nothing (the lease is kept alive on its own). Free licences are rounded down to a
        twentieth of the total, so a busy service rewrites it when its load moves a step."""
        state = self.snapshot()
        step = max(1, state["licences_total"] // LOAD_STEPS)
        value = {
            "address": address,
            "service": self.name,
            "version": self.version,
            "pid": os.getpid(),
            "phase": phase,
            "health": health,
            **{key: state[key] for key in ("workers", "workers_ready", "gpus", "licences_total", "labels")},
            "licences_free": state["licences_free"] // step * step,
        }
        if state["lb_type"]:  # AILBType's lbType
            value["type"] = state["lb_type"]
        return value
