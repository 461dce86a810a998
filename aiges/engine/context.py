"""What a call is, besides its frames: who calls, until when, and whether it is still wanted.

Every front builds one ``RequestContext`` per call (a one-shot call, or a session from its first
frame on) and hands it to the engine with the frame; admission, the pool and the worker all read
the call's caller, deadline and cancellation from it, so no request state rides a ContextVar and
no entry point can forget it. The worker receives the part it needs (``wire``): the handle, the
trace, the app and the deadline.

Deadlines are absolute ``time.monotonic()`` values (one clock for every process on the host);
``None`` means the caller set none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiges.engine.messages import CallContext


@dataclass(frozen=True, slots=True)
class Quota:
    """An app's own limits (``[[app]]`` in the keys file): calls a second, burst, open sessions;
    0 means unlimited."""

    rate: float = 0.0
    burst: int = 0
    max_sessions: int = 0


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: the app the request was authenticated as (empty when callers are not
    authenticated), its rights and quota, the client certificate's identity (mTLS), and the
    address the request came from."""

    app_id: str = ""
    admin: bool = False
    quota: Quota | None = None
    identity: str = ""
    address: str = ""

    @property
    def authenticated(self) -> bool:
        return bool(self.app_id)


ANONYMOUS = Caller()


class Cancellation:
    """Set once, when the caller is gone (cancelled, disconnected) or the server gives the call
    up; what registered with ``on_cancel`` then runs, once. Not thread-safe: the event loop's."""

    __slots__ = ("_callbacks", "reason")

    def __init__(self) -> None:
        self.reason = ""
        self._callbacks: list[Callable[[], None]] | None = []

    @property
    def cancelled(self) -> bool:
        return self._callbacks is None

    def cancel(self, reason: str) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is None:
            return
        self.reason = reason
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when cancelled (at once, if it already is)."""
        if self._callbacks is None:
            callback()
        else:
            self._callbacks.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        if self._callbacks is not None and callback in self._callbacks:
            self._callbacks.remove(callback)


@dataclass(slots=True, eq=False)
class RequestContext:
    """One call's context: its handle (``tag``), its caller, its trace, its deadline, its
    priority (higher first) and its cancellation."""

    tag: str
    caller: Caller = ANONYMOUS
    trace: str = ""
    deadline: float | None = None
    priority: int = 0
    cancellation: Cancellation = field(default_factory=Cancellation)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (negative once past), or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wire(self, peer: str) -> CallContext:
        """What the worker is told of the call (``peer``: this server, for replies that name it)."""
        return CallContext(self.tag, self.trace, peer, self.caller.app_id, self.deadline or 0.0)


def deadline_in(seconds: float | None) -> float | None:
    """The absolute deadline ``seconds`` from now (None stays None)."""
    return None if seconds is None else time.monotonic() + seconds
