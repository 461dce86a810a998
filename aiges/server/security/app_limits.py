"""Per-app limits on top of the licences (``[[app]] rate`` and ``max_sessions``), in the engine.

In ``[auth] mode = "hmac"`` the server runs a ``LimitedEngine``: the engine, whose first frames
(one-shot calls and session opens: what takes a licence) first pass the calling app's token
bucket (``rate`` calls a second, ``burst`` at once; 10140 past it), and whose sessions are counted
per app from open to close (``max_sessions``; 10141 past it). A session's later frames are not
limited: they are the session the app was allowed to open. Both answer HTTP 429, gRPC
RESOURCE_EXHAUSTED on OIP, and the code in the LoaderOutput on xsf. Calls without a caller (mode
none) pass untouched; the counts are in ``/metrics`` (``aiges_app_calls_total``,
``aiges_app_sessions_open``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiges.engine.context import RequestContext
from aiges.engine.engine import Engine
from aiges.engine.messages import Frame, Output
from aiges.engine.sessions import Session
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import APP_CALLS, APP_SESSIONS
from aiges.server.security.app_keys import App
from aiges.server.security.caller import CALLER


class AppLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # app_id -> (tokens, when)
        self.sessions: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self._calls: dict[tuple[str, int], Any] = {}

    def count(self, app: App, code: int) -> None:
        counter = self._calls.get((app.app_id, code))
        if counter is None:
            counter = self._calls[(app.app_id, code)] = APP_CALLS.labels(app.app_id, str(code))
        counter.inc()

    def admit(self, app: App) -> None:
        """Take a token from the app's bucket, or refuse (10140)."""
        if app.rate > 0:
            capacity = app.burst or max(1.0, app.rate)
            now = self.clock()
            tokens, when = self._buckets.get(app.app_id, (capacity, now))
            tokens = min(capacity, tokens + (now - when) * app.rate)
            if tokens < 1.0:
                self._buckets[app.app_id] = (tokens, now)
                self.count(app, ErrorCode.APP_RATE)
                raise AigesError(ErrorCode.APP_RATE, f"app {app.app_id} is over its rate of {app.rate:g} calls/s")
            self._buckets[app.app_id] = (tokens - 1.0, now)
        self.count(app, 0)

    def full(self, app: App) -> bool:
        used = self.sessions.get(app.app_id, 0) + self.pending.get(app.app_id, 0)
        return 0 < app.max_sessions <= used

    def sessions_error(self, app: App) -> AigesError:
        self.count(app, ErrorCode.APP_SESSIONS)
        return AigesError(
            ErrorCode.APP_SESSIONS, f"app {app.app_id} has its {app.max_sessions} sessions open ([[app]] max_sessions)"
        )

    def opened(self, app_id: str) -> None:
        self.sessions[app_id] = self.sessions.get(app_id, 0) + 1
        APP_SESSIONS.labels(app_id).inc()

    def closed(self, app_id: str) -> None:
        self.sessions[app_id] -= 1
        APP_SESSIONS.labels(app_id).dec()


class LimitedEngine(Engine):
    """The engine with per-app limits on its first frames (see the module's doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = AppLimits()
        self._owners: dict[Session, str] = {}

    async def once(self, context: RequestContext, frame: Frame) -> Output:
        app = CALLER.get()
        if app is not None:
            self.limits.admit(app)
        return await super().once(context, frame)

    async def open(self, context: RequestContext, frame: Frame, *, ordered: bool = False) -> Session:
        app = CALLER.get()
        if app is None:
            return await super().open(context, frame, ordered=ordered)
        if self.limits.full(app):
            raise self.limits.sessions_error(app)
        self.limits.admit(app)
        pending = self.limits.pending
        pending[app.app_id] = pending.get(app.app_id, 0) + 1
        try:
            session = await super().open(context, frame, ordered=ordered)
        finally:
            pending[app.app_id] -= 1
        return self._own(app, session)

    def _own(self, app: App, session: Session) -> Session:
        if self.limits.full(app):
            super().close(session, reason="over the app's max_sessions")
            raise self.limits.sessions_error(app)
        self._owners[session] = app.app_id
        self.limits.opened(app.app_id)
        return session

    def close(self, session: Session, destroy: bool = True, reason: str = "") -> None:
        super().close(session, destroy, reason)
        app_id = self._owners.pop(session, None)
        if app_id is not None:
            self.limits.closed(app_id)
