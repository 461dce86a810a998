"""``grpc.health.v1.Health`` that tracks the workers, for "" and for the service name.

SERVING only while the server is up and at least ``[worker] min_ready`` workers (default: all)
have finished wrapperInit; NOT_SERVING while starting, while a worker is down beyond that, and
from the moment a drain begins. ``Watch`` streams each change.

The service ``aiges.liveness`` answers SERVING whenever the process can answer at all, through
start-up, worker restarts and drain alike: it is what a liveness probe asks, so that a pod whose
worker is being replaced, or that is draining, is not killed for being unready. Only a worker that
has failed ``[worker] start_failures`` starts in a row (an init that errs, crashes or hangs past
``ready_timeout_ms``) turns it NOT_SERVING, so that such a pod is restarted. (A startup probe
asks ``""``: it should pass once wrapperInit has finished.)
"""

from __future__ import annotations

import asyncio
import enum

import structlog
from grpc_health.v1 import health, health_pb2

from aiges.engine.engine import Engine

log = structlog.get_logger("aiges.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = "aiges.liveness"


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Health:
    def __init__(self, engine: Engine, service_name: str, min_ready: int, workers: int) -> None:
        self.engine = engine
        self.names = ("", service_name)
        self.min_ready = min_ready or workers
        self.servicer = health.aio.HealthServicer()
        self.phase = Phase.STARTING
        self.status = NOT_SERVING
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return bool(self.status == SERVING)

    def status_name(self) -> str:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(self.status))

    async def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        await self.refresh()

    async def refresh(self) -> None:
        state = self.engine.status()
        await self.servicer.set(LIVENESS, SERVING if state.live else NOT_SERVING)
        ready = self.phase is Phase.SERVING and state.workers_ready >= self.min_ready
        status = SERVING if ready else NOT_SERVING
        if status != self.status:
            self.status = status
            log.info(
                "health",
                status=self.status_name(),
                phase=self.phase.value,
                workers_ready=state.workers_ready,
                workers=len(state.workers),
            )
            self.changed.set()
        for name in self.names:
            await self.servicer.set(name, status)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow_workers())

    async def _follow_workers(self) -> None:
        while True:
            await self.engine.changed.wait()
            self.engine.changed.clear()
            await self.refresh()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
