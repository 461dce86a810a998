"""``grpc.health.v1.Health`` that tracks the workers: for "" and the config's section name (the
server as a whole) and for each service's name.

A service is SERVING only while the server serves and at least its ``[worker] min_ready``
workers (default: all) have finished wrapperInit; the server is SERVING while every service is
(as Triton's strict readiness: a pod answers for all it serves). A service being added while
serving counts once its self-test has passed; a removed one answers SERVICE_UNKNOWN. Everything
is NOT_SERVING while starting and from the moment a drain begins. ``Watch`` streams each change.

The service ``aiges.liveness`` answers SERVING whenever the process can answer at all, through
start-up, worker restarts and drain alike: it is what a liveness probe asks, so that a pod whose
worker is being replaced, or that is draining, is not killed for being unready. Only a worker that
has failed ``[worker] start_failures`` starts in a row (an init that errs, crashes or hangs past
``ready_timeout_ms``), in any service, turns it NOT_SERVING, so that such a pod is restarted. (A
startup probe asks ``""``: it should pass once wrapperInit has finished.)
"""

from __future__ import annotations

import asyncio
import enum

import structlog
from grpc_health.v1 import health, health_pb2

from aiges.server.services import Services

log = structlog.get_logger("aiges.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
LIVENESS = "aiges.liveness"


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Health:
    def __init__(self, services: Services, service_name: str) -> None:
        """``service_name``: the config's section name (``svcName``), also answered for the server."""
        self.services = services
        self.names = ("", service_name)
        self.servicer = health.aio.HealthServicer()
        self.phase = Phase.STARTING
        self.status = NOT_SERVING
        self.changed = asyncio.Event()
        """Set when the server's status changes."""
        self._poke = asyncio.Event()
        self._per_service: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return bool(self.status == SERVING)

    def status_name(self) -> str:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(self.status))

    def service_status(self, name: str) -> str:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(self._per_service.get(name, UNKNOWN)))

    def poke(self) -> None:
        """Something changed (a service's workers, the services themselves): refresh soon."""
        self._poke.set()

    async def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        await self.refresh()

    async def refresh(self) -> None:
        members = list(self.services)
        live = all(service.engine.status().live for service in members)  # not one being added or retired
        await self.servicer.set(LIVENESS, SERVING if live else NOT_SERVING)
        serving = self.phase is Phase.SERVING
        statuses = {s.name: SERVING if serving and s.ready() else NOT_SERVING for s in members if s.name}
        overall = SERVING if serving and members and all(s.ready() for s in members) else NOT_SERVING
        if overall != self.status:
            self.status = overall
            log.info(
                "health",
                status=self.status_name(),
                phase=self.phase.value,
                services={s.label: "ready" if s.ready() else s.state.value for s in members},
                workers_ready=sum(s.engine.status().workers_ready for s in members),
            )
            self.changed.set()
        for name in self.names:
            await self.servicer.set(name, overall)
        for name in self._per_service.keys() - statuses.keys() - set(self.names):
            await self.servicer.set(name, UNKNOWN)  # removed (or renamed by a replace)
        for name, status in statuses.items():
            if name not in self.names:
                await self.servicer.set(name, status)
        self._per_service = statuses

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await self._poke.wait()
            self._poke.clear()
            await self.refresh()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
