"""A place in the pool: a ``WorkerSlot`` has an index and a GPU, the settings its workers start
with, its generation and role in a reload, how often it was restarted, and its current worker.

Roles move one way only: INCOMING -> SERVING (a reload's new slot once the reload succeeds),
INCOMING | SERVING -> RETIRING (abandoned, or replaced); anything else is refused and logged.
"""

from __future__ import annotations

import enum

import structlog

from aiges.engine.messages import WorkerSettings
from aiges.engine.pool.records import WorkerStatus
from aiges.engine.pool.worker import Worker, WorkerState

log = structlog.get_logger("aiges.pool")


class SlotRole(enum.Enum):
    SERVING = "serving"
    """Of the generation that takes new calls (or, while a reload starts its replacement, until
    the replacement is ready)."""
    INCOMING = "incoming"
    """Of a reload's new generation: takes its index's new calls once its worker is ready."""
    RETIRING = "retiring"
    """Of a replaced (or abandoned) generation: finishes its calls and sessions, takes no new
    ones, is never restarted, and stops."""


_ROLE_MOVES: dict[SlotRole, frozenset[SlotRole]] = {
    SlotRole.INCOMING: frozenset({SlotRole.SERVING, SlotRole.RETIRING}),
    SlotRole.SERVING: frozenset({SlotRole.RETIRING}),
    SlotRole.RETIRING: frozenset(),
}


class WorkerSlot:
    def __init__(
        self,
        index: int,
        gpu: str,
        settings: WorkerSettings,
        *,
        generation: int = 1,
        role: SlotRole = SlotRole.SERVING,
        restarts: int = 0,
    ) -> None:
        self.index = index
        self.gpu = gpu
        self.settings = settings
        """What its workers start with (the pool's, or a reload's)."""
        self.generation = generation
        self.restarts = restarts
        self._failed_starts = 0
        self._role = role
        self.worker: Worker | None = None
        """Its current worker (a new one on each start)."""
        self.replacement: WorkerSlot | None = None
        """While a reload runs: the new generation's slot for this index."""

    def __repr__(self) -> str:
        return f"<WorkerSlot {self.index} gen {self.generation} {self._role.value}>"

    @property
    def role(self) -> SlotRole:
        return self._role

    @property
    def failed_starts(self) -> int:
        """Starts that failed in a row (init error, death or ready timeout); 0 once one succeeds."""
        return self._failed_starts

    def _move(self, to: SlotRole) -> bool:
        if to not in _ROLE_MOVES[self._role]:
            log.warning("slot role change refused", worker=self.index, role=self._role.value, to=to.value)
            return False
        self._role = to
        return True

    def promote(self) -> bool:
        """A reload's new slot now serves its index."""
        return self._move(SlotRole.SERVING)

    def retire(self) -> bool:
        return self._move(SlotRole.RETIRING)

    def start_failed(self) -> None:
        self._failed_starts += 1

    def start_succeeded(self) -> None:
        self._failed_starts = 0

    def takes_new_calls(self) -> bool:
        """Whether its worker gets new calls and sessions: not once retiring, and a serving slot
        not once its replacement's worker is ready."""
        if self._role is SlotRole.RETIRING:
            return False
        if self._role is SlotRole.SERVING and self.replacement is not None:
            new = self.replacement.worker
            return new is None or not new.ready
        return True

    def active(self) -> WorkerSlot:
        """The slot that takes this index's new calls: the replacement once its worker is ready."""
        new = self.replacement
        return new if new is not None and new.worker is not None and new.worker.ready else self

    def status(self) -> WorkerStatus:
        worker = self.worker
        return WorkerStatus(
            index=self.index,
            gpu=self.gpu,
            state=worker.state.value if worker is not None else WorkerState.DEAD.value,
            pid=worker.info.pid if worker is not None and worker.info and worker.ready else None,
            restarts=self.restarts,
            failed_starts=self._failed_starts,
            generation=self.generation,
        )
