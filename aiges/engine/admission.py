"""The one admission point: every one-shot call and every session's first frame passes it
before anything runs, and holds what it was given (a ``Ticket``) until it ends.

    draining           10110: the server is stopping; the client retries elsewhere
    the app's rate     10140: past its token bucket (``[[app]] rate``, ``burst``)
    the app's sessions 10141: as many sessions open as ``[[app]] max_sessions``
    licences           10110: ``[fc] max`` calls and sessions at once

The counts live in this process (``LocalCounts``) or, for fronts sharing a port, in the host's
shared state, so that the host keeps its promises however many fronts it runs. A ticket is
released once, by whatever ends the call or the session (the engine has one release
path per kind); releasing it again does nothing. Calls from callers with no quota (callers not
authenticated, or apps without limits) pay for the licence only. A session's later frames are not
admitted again: they belong to the session that was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from aiges.engine.backend import Estimate
from aiges.engine.context import RequestContext
from aiges.engine.licences import Licences
from aiges.errors import AigesError, ErrorCode, Overloaded
from aiges.metrics import APP_CALLS, APP_SESSIONS

DEADLINE_SHARE = 0.8
"""A call is admitted when the estimate has it done within this share of the time its deadline
leaves: the rest is for the reply's way back and for the estimate's error."""
NO_ESTIMATE_RETRY_S = 1.0
"""The retry hint of a refusal before any worker has answered (nothing to estimate from)."""


class Ticket:
    """What an admitted call or session holds: a licence and, for a session of an app with a
    session limit, its place in that app's count."""

    __slots__ = ("_admission", "_held", "app_session")

    def __init__(self, admission: Admission, app_session: str) -> None:
        self._admission = admission
        self._held = True
        self.app_session = app_session
        """The app whose session count this session is in ("" for none)."""

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission.release(self)


class LicenceCounts(Protocol):
    """Where licences are counted: this process (``LocalCounts``), or the host's state shared by
    the fronts of one port (``aiges.server.host_state.HostState``, with ``[svcName] reuseport``)."""

    def acquire_licence(self) -> bool: ...

    def release_licence(self) -> None: ...

    def licences_total(self) -> int: ...

    def licences_used(self) -> int: ...

    def resize_licences(self, total: int) -> None: ...


class AppCounts(Protocol):
    """Where the apps' token buckets and open sessions are counted (as ``LicenceCounts``)."""

    def take_token(self, app_id: str, rate: float, burst: float) -> bool: ...

    def open_session(self, app_id: str, limit: int) -> bool: ...

    def close_session(self, app_id: str) -> None: ...

    def sessions(self, app_id: str) -> int: ...


class LocalCounts:
    """Licences, buckets and sessions counted in this process."""

    def __init__(self, licences: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.licences = Licences(licences)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # app_id -> (tokens, when)
        self._sessions: dict[str, int] = {}

    def acquire_licence(self) -> bool:
        if self.licences.free <= 0:
            return False
        self.licences.acquire()
        return True

    def release_licence(self) -> None:
        self.licences.release()

    def licences_total(self) -> int:
        return self.licences.total

    def licences_used(self) -> int:
        return self.licences.used

    def resize_licences(self, total: int) -> None:
        self.licences.total = total

    def take_token(self, app_id: str, rate: float, burst: float) -> bool:
        capacity = burst or max(1.0, rate)
        now = self.clock()
        tokens, when = self._buckets.get(app_id, (capacity, now))
        tokens = min(capacity, tokens + (now - when) * rate)
        taken = tokens >= 1.0
        self._buckets[app_id] = (tokens - 1.0 if taken else tokens, now)
        return taken

    def open_session(self, app_id: str, limit: int) -> bool:
        open_now = self._sessions.get(app_id, 0)
        if 0 < limit <= open_now:
            return False
        self._sessions[app_id] = open_now + 1
        return True

    def close_session(self, app_id: str) -> None:
        self._sessions[app_id] -= 1

    def sessions(self, app_id: str) -> int:
        return self._sessions.get(app_id, 0)


class Capacity(Protocol):
    """What admission asks of the engine's workers (the backend, through the engine)."""

    def estimate(self, priority: int) -> Estimate | None:
        """How long a new call of ``priority`` would wait for a worker, and then run."""

    def make_room(self, priority: int) -> bool:
        """Refuse a waiting call less urgent than ``priority`` so that it may take its licence."""


class Admission:
    def __init__(self, licences: LicenceCounts, apps: AppCounts) -> None:
        self.licences = licences
        self.apps = apps
        self.draining = False
        self.capacity: Capacity | None = None
        """Set by the engine: the deadline check and the priority of refusals need it."""
        self._calls: dict[tuple[str, int], Any] = {}

    @classmethod
    def local(cls, licences: int, clock: Callable[[], float] = time.monotonic) -> Admission:
        """Admission with everything counted in this process."""
        counts = LocalCounts(licences, clock)
        return cls(counts, counts)

    @property
    def total(self) -> int:
        return self.licences.licences_total()

    @property
    def used(self) -> int:
        return self.licences.licences_used()

    def admit(self, context: RequestContext, *, session: bool) -> Ticket:
        """Admit a one-shot call or a session, or raise the refusal's AigesError (nothing is
        held after a refusal)."""
        if self.draining:
            raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, "server is draining; retry on another instance")
        estimate = self.capacity.estimate(context.priority) if self.capacity is not None else None
        if context.deadline is not None:
            self._check_deadline(context, estimate)
        caller = context.caller
        quota = caller.quota
        app_session = ""
        if quota is not None:
            app_id = caller.app_id
            if session:
                if not self.apps.open_session(app_id, quota.max_sessions):
                    self._count(app_id, ErrorCode.APP_SESSIONS)
                    raise AigesError(
                        ErrorCode.APP_SESSIONS,
                        f"app {app_id} has its {quota.max_sessions} sessions open ([[app]] max_sessions)",
                    )
                app_session = app_id
            if quota.rate > 0 and not self.apps.take_token(app_id, quota.rate, quota.burst):
                self._undo(app_session)
                self._count(app_id, ErrorCode.APP_RATE)
                raise AigesError(ErrorCode.APP_RATE, f"app {app_id} is over its rate of {quota.rate:g} calls/s")
            self._count(app_id, 0)
        if not self.licences.acquire_licence() and not self._room_for(context.priority):
            self._undo(app_session)
            raise Overloaded(
                f"service license not enough ({self.total} in use)",
                estimate.done_in_s if estimate is not None else NO_ESTIMATE_RETRY_S,
            )
        if app_session:
            APP_SESSIONS.labels(app_session).inc()
        return Ticket(self, app_session)

    def release(self, ticket: Ticket) -> None:
        """Only through ``Ticket.release``, which calls it once."""
        self.licences.release_licence()
        if ticket.app_session:
            self.apps.close_session(ticket.app_session)
            APP_SESSIONS.labels(ticket.app_session).dec()

    def _check_deadline(self, context: RequestContext, estimate: Estimate | None) -> None:
        """Refuse at once a call that could not be done before its deadline: 10102 if it has
        passed already, else 10110 with when a retry would fit."""
        remaining = context.remaining()
        assert remaining is not None
        if remaining <= 0:
            raise AigesError(ErrorCode.ONCE_TIMEOUT, "the call's deadline passed before it arrived")
        if estimate is not None and estimate.done_in_s > remaining * DEADLINE_SHARE:
            raise Overloaded(
                f"the call cannot be done before its deadline: it would wait about {estimate.wait_s * 1000:.0f} ms "
                f"for a worker and run about {estimate.service_s * 1000:.0f} ms, {remaining * 1000:.0f} ms are left",
                estimate.done_in_s - remaining * DEADLINE_SHARE,
            )

    def _room_for(self, priority: int) -> bool:
        """A licence after all: a less urgent call waiting for a worker gives its own up."""
        return self.capacity is not None and self.capacity.make_room(priority) and self.licences.acquire_licence()

    def _undo(self, app_session: str) -> None:
        if app_session:
            self.apps.close_session(app_session)

    def _count(self, app_id: str, code: int) -> None:
        counter = self._calls.get((app_id, code))
        if counter is None:
            counter = self._calls[(app_id, code)] = APP_CALLS.labels(app_id, str(code))
        counter.inc()
