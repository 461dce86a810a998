"""The kept resources (``AILoad``), loaded in every worker that takes calls.

The server keeps the loaded set (``resources.ResourceStore``); a load or an unload goes to every
ready worker but the retiring ones, and a load any worker refuses is rolled back in all of them.
A worker that starts (a restart, a reload) loads the whole set before it is ready, catching up
with loads and unloads made meanwhile, so that a ready worker holds exactly the kept set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from aiges.engine.messages import LoadResource, UnloadResource
from aiges.engine.pool.worker import Worker, WorkerState
from aiges.engine.resources import Resource, ResourceStore
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.pool")


class ResourceReplicator:
    def __init__(self, store: ResourceStore, holders: Callable[[], list[Worker]], new_id: Callable[[], int]) -> None:
        self.store = store
        self._holders = holders
        self._new_id = new_id
        self._lock = asyncio.Lock()

    async def load(self, resource: Resource) -> None:
        """Keep ``resource`` and load it in every holder (a worker that starts later loads it
        then). If any fails, every worker is put back as it was and the error is raised. A
        resource with a loaded id replaces it (wrapperLoadRes is called again)."""
        async with self._lock:
            self.store.check(resource)
            previous = self.store.get(resource.res_id)
            self.store.put(resource)
            holders = self._holders()  # in the same step: a worker ready later replays the store
            results = await asyncio.gather(*(self._load_in(w, resource) for w in holders), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if not failures:
                log.info("resource loaded", res_id=resource.res_id, bytes=resource.size, workers=len(holders))
                return
            if previous is None:
                self.store.remove(resource.res_id)
            else:
                self.store.put(previous)
            # every worker that now holds it: those that loaded it here, and any that started meanwhile
            loaded = [w for w in self._holders() if w.resources.get(resource.res_id) is resource]
            await asyncio.gather(
                *(self._put_back(w, resource.res_id, previous) for w in loaded), return_exceptions=True
            )
            error = failures[0]
            log.warning("resource load failed", res_id=resource.res_id, error=str(error))
            raise error if isinstance(error, AigesError) else AigesError(ErrorCode.WRAPPER_LOAD, str(error))

    async def unload(self, res_id: int) -> None:
        """Forget a kept resource and unload it from every holder; 10120 if it is not loaded.
        An unload a wrapper refuses is raised (10904), but the resource is forgotten all the same."""
        async with self._lock:
            self.store.remove(res_id)
            holders = [w for w in self._holders() if res_id in w.resources]
            results = await asyncio.gather(*(self._unload_in(w, res_id) for w in holders), return_exceptions=True)
            log.info("resource unloaded", res_id=res_id, workers=len(holders))
            for result in results:
                if isinstance(result, AigesError):
                    raise result

    async def replay(self, worker: Worker) -> bool:
        """Load the kept set in a starting worker (and unload what was dropped meanwhile) until
        it holds exactly that set: True then, and the caller marks it ready in the same step;
        False if it stopped starting meanwhile. Raises the AigesError of a load it refused."""
        while worker.state is WorkerState.STARTING:
            loaded = self.store.loaded
            missing = [r for r in loaded.values() if worker.resources.get(r.res_id) is not r]
            stale = [res_id for res_id in worker.resources if res_id not in loaded]
            if not missing and not stale:
                return True
            for resource in missing:
                await self._load_in(worker, resource)
            for res_id in stale:
                await worker.request(UnloadResource(self._new_id(), res_id))
                worker.resources.pop(res_id, None)
        return False

    async def _load_in(self, worker: Worker, resource: Resource) -> None:
        await worker.request(LoadResource(self._new_id(), resource.res_id, resource.items))
        worker.resources[resource.res_id] = resource

    async def _unload_in(self, worker: Worker, res_id: int) -> None:
        worker.resources.pop(res_id, None)
        await worker.request(UnloadResource(self._new_id(), res_id))

    async def _put_back(self, worker: Worker, res_id: int, previous: Resource | None) -> None:
        if previous is None:
            await self._unload_in(worker, res_id)
        else:
            await self._load_in(worker, previous)
