"""What the engine runs calls on: a ``Backend``. The worker pool is one, as MLServer's
``ParallelModel`` is an ``MLModel``: the engine (licences, sessions, admission) talks to this
protocol and never to a process, a socket or a slot.

A session lives on one worker: ``open`` answers with the ``WorkerRef`` that holds it, which the
engine passes back on every later call of that session; the backend counts the sessions each
worker holds from ``open`` to ``destroy`` (or ``detach``, when the session ends without a
destroy: its worker is gone, or the server stops). Exactly one of the two per session.

For admission (issue 25), ``loads`` tells what each worker that takes new calls has queued and
its running service-time estimate, and ``withdraw`` drops a one-shot or first frame that has not
been sent to its worker yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiges.engine.items import WorkerInfo
from aiges.engine.messages import Destroy, Finish, Once, OnceReply, Open, Opened, Pause, Resume, WorkerSettings, Write

if TYPE_CHECKING:
    from aiges.engine.pool import ReloadOutcome, WorkerLoad, WorkerStatus
    from aiges.engine.resources import Resource, ResourceStore


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a new first frame can expect: the wait before a worker starts it, and its run."""

    wait_s: float
    service_s: float

    @property
    def done_in_s(self) -> float:
        return self.wait_s + self.service_s


class WorkerRef(Protocol):
    """The worker a session lives on, as the engine sees it."""

    @property
    def index(self) -> int: ...

    @property
    def ready(self) -> bool: ...


class Backend(Protocol):
    @property
    def generation(self) -> int:
        """The serving generation of workers (1, then one more per successful reload)."""

    @property
    def reloading(self) -> bool: ...

    @property
    def resources(self) -> ResourceStore:
        """The kept resources (read only: ``load_resource``/``unload_resource`` change them)."""

    @property
    def live(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float = 10.0) -> None: ...

    def new_id(self) -> int:
        """An id for a call message (its answer is matched by it)."""

    async def once(self, message: Once, priority: int = 0) -> tuple[WorkerRef, OnceReply]:
        """A one-shot call, on a worker as soon as one has room (higher ``priority`` first; moved
        to another if its worker dies before starting it), and the worker that answered."""

    async def open(self, message: Open, priority: int = 0) -> tuple[WorkerRef, Opened]:
        """A session's first frame; the session is attached to the worker that answered."""

    def estimate(self, priority: int) -> Estimate | None:
        """How long a new first frame of ``priority`` would wait and then run (None: not known yet)."""

    def evict_below(self, priority: int) -> int | None:
        """Refuse (10110) the least urgent waiting first frame, if less urgent than ``priority``."""

    async def write(self, worker: WorkerRef, message: Write) -> None: ...

    async def finish(self, worker: WorkerRef, message: Finish) -> None: ...

    async def destroy(self, worker: WorkerRef, message: Destroy) -> None:
        """wrapperDestroy on the session's worker; the session is detached from it."""

    def detach(self, worker: WorkerRef) -> None:
        """A session of ``worker`` ended without a destroy (its worker is gone)."""

    def notify(self, worker: WorkerRef, message: Pause | Resume) -> None:
        """A one-way message to a session's worker (lost, without error, if it is gone)."""

    def withdraw(self, call_id: int) -> bool:
        """Drop a one-shot or first frame (by its message's ``call_id``) no worker has yet: its
        ``once``/``open`` raises CancelledError. False once a worker has it."""

    def cancel(self, call_id: int) -> bool:
        """Tell the worker that has a call (by its message's ``call_id``) that its caller went
        away: it does not start it, or the wrapper is told. False if no worker has it."""

    def loads(self) -> list[WorkerLoad]:
        """Per ready worker that takes new calls: calls queued and not started, calls in flight,
        sessions, and the running estimate of one call's exec time."""

    async def load_resource(self, resource: Resource) -> None: ...

    async def unload_resource(self, res_id: int) -> None: ...

    async def reload(self, settings: WorkerSettings, drain_timeout_s: float) -> ReloadOutcome: ...

    def info(self) -> WorkerInfo | None: ...

    def status(self) -> list[WorkerStatus]: ...

    def retiring_status(self) -> list[WorkerStatus]: ...
