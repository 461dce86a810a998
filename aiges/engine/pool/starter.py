"""Starting workers: spawn a slot's worker, wait for its wrapperInit (within
``ready_timeout_ms``), start a whole generation, and restart a slot whose worker died, with
back-off, counting its restarts and the starts that failed in a row (``WorkerSlot.failed_starts``,
which the pool's ``live`` reads)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable

import structlog

from aiges.engine import ipc
from aiges.engine.messages import Init
from aiges.engine.pool.launcher import Launcher
from aiges.engine.pool.records import RESTART_BACKOFF_S, PoolSettings, WorkerInitError
from aiges.engine.pool.slots import SlotRole, WorkerSlot
from aiges.engine.pool.worker import OutputListener, Worker, WorkerEvents
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.pool")


class Starter:
    def __init__(
        self,
        settings: PoolSettings,
        launcher: Launcher,
        events: WorkerEvents,
        listener: OutputListener,
        stopping: Callable[[], bool],
        changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.launcher = launcher
        self._events = events
        self._listener = listener
        self._stopping = stopping
        self._changed = changed

    async def spawn(self, slot: WorkerSlot) -> Worker:
        """A new worker for ``slot``, launched and sent its Init (it is STARTING)."""
        server_end, worker_end = ipc.socket_pair()
        cancels, worker_cancels = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        size = self.settings.shm_bytes
        rings = (ShmRing(size), ShmRing(size)) if size else None
        worker = Worker(slot, server_end, rings, slot.settings, self._events, self._listener, cancels)
        slot.worker = worker
        try:
            launched = await self.launcher.launch(slot, worker_end, rings, self.settings, cancels=worker_cancels)
            worker.launched(launched)
        except OSError as exc:
            worker.channel.close()
            raise WorkerInitError(f"worker {slot.index} could not be started: {exc}") from None
        finally:
            worker_end.close()
            worker_cancels.close()
        worker.channel.send(Init(slot.settings))
        return worker

    async def started(self, worker: Worker) -> None:
        """Wait for a spawned worker's wrapperInit; past ``ready_timeout_ms`` it is killed and
        this raises WorkerInitError, as a failed init does."""
        timeout = self.settings.ready_timeout_ms / 1000 or None
        try:
            await asyncio.wait_for(asyncio.shield(worker.started), timeout)
        except asyncio.TimeoutError:
            reason = f"wrapperInit did not finish within ready_timeout_ms={self.settings.ready_timeout_ms}"
            worker.kill(reason)
            with contextlib.suppress(WorkerInitError):
                await worker.started  # settles once the process is gone
            raise WorkerInitError(f"worker {worker.index}: {reason}") from None

    async def start_generation(self, slots: list[WorkerSlot]) -> str | None:
        """Spawn the slots' workers and wait until all are ready: None, or why one was not (then
        the others still starting are stopped)."""
        workers: list[Worker] = []
        try:
            for slot in slots:
                workers.append(await self.spawn(slot))
        except WorkerInitError as exc:
            error: str | None = str(exc)
        else:
            error = None
            waits = [asyncio.ensure_future(self.started(w)) for w in workers]
            for done in asyncio.as_completed(waits):
                try:
                    await done
                except WorkerInitError as exc:
                    error = str(exc)
                    break
            for wait in waits:
                wait.cancel()
        if error is not None:
            for worker in workers:
                if not worker.ready:
                    worker.kill("the reload was abandoned")
        return error

    async def after_failed_start(self, worker: Worker) -> None:
        """A worker died before it was ready: the calls it had (resource loads) fail, and whoever
        waits for its start is told why."""
        reason = await worker.exit_reason()
        worker.close_rings()
        worker.fail_calls(AigesError(ErrorCode.WORKER_CRASH, f"worker {worker.index}: {reason}"))
        worker.fail_start(f"worker {worker.index} died during start-up: {reason}")

    async def restart(self, slot: WorkerSlot, lost: Worker) -> None:
        """Start ``slot`` again after ``lost`` died, waiting longer after each failed try, until a
        worker is ready, the slot retires, or the pool stops."""
        for attempt in itertools.count():
            if self._stopping() or slot.worker is not lost or slot.role is SlotRole.RETIRING:
                return
            await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
            if self._stopping():
                return
            slot.restarts += 1
            try:
                await self.started(await self.spawn(slot))
            except (WorkerInitError, OSError) as exc:
                lost = slot.worker or lost  # the attempt that failed is the one to replace next
                slot.start_failed()
                self._changed()
                log.error("worker restart failed", worker=slot.index, error=str(exc), failed_starts=slot.failed_starts)
                process = lost.process
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()
                continue
            slot.start_succeeded()
            self._changed()
            return
