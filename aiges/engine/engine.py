"""The engine: what every front calls. It owns the licences, the sessions and the worker pool."""

from __future__ import annotations

from aiges.engine.licences import Licences
from aiges.engine.pool import WorkerPool
from aiges.engine.types import DataItem, Request


class Engine:
    def __init__(self, pool: WorkerPool, licences: Licences) -> None:
        self.pool = pool
        self.licences = licences

    async def once(self, request: Request) -> list[DataItem]:
        """Run a one-shot call on the least-loaded worker, holding one licence meanwhile."""
        with self.licences.hold():
            return await self.pool.call("once", request.tag, request.params, request.items, retryable=True)
