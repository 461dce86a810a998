"""The pool's plain records: what it is configured with, what it reports, how a start fails."""

from __future__ import annotations

from dataclasses import dataclass

from aiges.engine.messages import WorkerSettings

RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
"""The waits before each restart of a slot whose worker died, the last one repeated."""


class WorkerInitError(Exception):
    """A worker could not load or initialise the wrapper at start-up; the text says why."""


@dataclass(slots=True)
class PoolSettings:
    worker: WorkerSettings
    """What workers start with (a successful reload replaces it)."""
    gpus: list[str]
    """One worker per entry, started with ``CUDA_VISIBLE_DEVICES`` set to it."""
    exec_timeout_ms: int
    shm_bytes: int = 64 << 20
    threads: int = 0
    ready_timeout_ms: int = 0
    start_failures: int = 3
    resource_count: int = 100
    resource_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    index: int
    gpu: str
    state: str
    pid: int | None
    restarts: int
    failed_starts: int
    generation: int = 1


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """What a worker that takes new calls has to do, as admission sees it (issue 25's input)."""

    index: int
    queued: int
    """Calls queued for it that have not started."""
    in_flight: int
    """Calls sent to it and not answered (the first is running)."""
    sessions: int
    service_s: float | None
    """The running estimate of one call's exec time (None before its first answer)."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: ``ok`` once the new generation serves every index; else ``error``
    says why, and the old generation serves on."""

    ok: bool
    generation: int
    workers: int
    ms: int
    error: str = ""
    retiring: int = 0
    """Old workers left to finish their calls and sessions."""
