"""The one admission point: every one-shot call and every session's first frame passes it
before anything runs, and holds what it was given (a ``Ticket``) until it ends.

    draining           10110: the server is stopping; the client retries elsewhere
    the app's rate     10140: past its token bucket (``[[app]] rate``, ``burst``)
    the app's sessions 10141: as many sessions open as ``[[app]] max_sessions``
    licences           10110: ``[fc] max`` calls and sessions at once

A ticket is released once, by whatever ends the call or the session (the engine has one release
path per kind); releasing it again does nothing. Calls from callers with no quota (callers not
authenticated, or apps without limits) pay for the licence only. A session's later frames are not
admitted again: they belong to the session that was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiges.engine.context import Quota, RequestContext
from aiges.engine.licences import Licences
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import APP_CALLS, APP_SESSIONS


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


class AppQuotas:
    """Each app's token bucket and open sessions, and their counts in ``/metrics``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # app_id -> (tokens, when)
        self.sessions: dict[str, int] = {}
        self._calls: dict[tuple[str, int], Any] = {}

    def count(self, app_id: str, code: int) -> None:
        counter = self._calls.get((app_id, code))
        if counter is None:
            counter = self._calls[(app_id, code)] = APP_CALLS.labels(app_id, str(code))
        counter.inc()

    def take_token(self, app_id: str, quota: Quota) -> None:
        """One call of the app's rate, or 10140."""
        if quota.rate <= 0:
            return
        capacity = quota.burst or max(1.0, quota.rate)
        now = self.clock()
        tokens, when = self._buckets.get(app_id, (capacity, now))
        tokens = min(capacity, tokens + (now - when) * quota.rate)
        if tokens < 1.0:
            self._buckets[app_id] = (tokens, now)
            self.count(app_id, ErrorCode.APP_RATE)
            raise AigesError(ErrorCode.APP_RATE, f"app {app_id} is over its rate of {quota.rate:g} calls/s")
        self._buckets[app_id] = (tokens - 1.0, now)

    def check_sessions(self, app_id: str, quota: Quota) -> None:
        if 0 < quota.max_sessions <= self.sessions.get(app_id, 0):
            self.count(app_id, ErrorCode.APP_SESSIONS)
            raise AigesError(
                ErrorCode.APP_SESSIONS,
                f"app {app_id} has its {quota.max_sessions} sessions open ([[app]] max_sessions)",
            )

    def opened(self, app_id: str) -> None:
        self.sessions[app_id] = self.sessions.get(app_id, 0) + 1
        APP_SESSIONS.labels(app_id).inc()

    def closed(self, app_id: str) -> None:
        self.sessions[app_id] -= 1
        APP_SESSIONS.labels(app_id).dec()


class Admission:
    def __init__(self, licences: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.licences = Licences(licences)
        self.apps = AppQuotas(clock)
        self.draining = False

    def admit(self, context: RequestContext, *, session: bool) -> Ticket:
        """Admit a one-shot call or a session, or raise the refusal's AigesError."""
        if self.draining:
            raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, "server is draining; retry on another instance")
        caller = context.caller
        quota = caller.quota
        app_session = ""
        if quota is not None:
            if session:
                self.apps.check_sessions(caller.app_id, quota)
            self.apps.take_token(caller.app_id, quota)
            self.apps.count(caller.app_id, 0)
            app_session = caller.app_id if session else ""
        self.licences.acquire()
        if app_session:
            self.apps.opened(app_session)
        return Ticket(self, app_session)

    def release(self, ticket: Ticket) -> None:
        """Only through ``Ticket.release``, which calls it once."""
        self.licences.release()
        if ticket.app_session:
            self.apps.closed(ticket.app_session)
