"""What a worker knows of the calls it runs: their deadlines and whether they are still wanted.

The server tells a worker that a call's caller has gone (``Cancel``) on a socket of its own, read
by a small thread (``CancelListener``), so the news arrives while the wrapper runs another call
(or that very one). A call that was cancelled, or whose deadline passed, before it starts is not
run at all; one that is running is marked (``CallState.cancelled``: what
``aiges.sdk.call_context()`` reads from the thread that runs it) and, for a C engine that exports
it, ``wrapperCancel`` is called with the call's handle.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from aiges.engine.ipc import CANCEL

log = logging.getLogger("aiges.worker")

REMEMBERED = 4096
"""Cancelled ids kept for calls not seen yet (a cancel may overtake its call)."""


class CallState:
    """One call's deadline and cancellation, for the wrapper."""

    __slots__ = ("_cancelled", "call_id", "deadline", "tag")

    def __init__(self, call_id: int, tag: str, deadline: float) -> None:
        self.call_id = call_id
        self.tag = tag
        self.deadline = deadline
        """``time.monotonic()`` (one clock on the host); 0 for none."""
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """The caller went away, or the deadline passed."""
        return self._cancelled.is_set() or (self.deadline > 0 and time.monotonic() >= self.deadline)

    @property
    def caller_gone(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float | None:
        return None if self.deadline <= 0 else self.deadline - time.monotonic()

    def cancel(self) -> None:
        self._cancelled.set()


_current = threading.local()


def current() -> CallState | None:
    """The call the calling thread runs in the wrapper, if any."""
    state: CallState | None = getattr(_current, "state", None)
    return state


@contextlib.contextmanager
def running(state: CallState | None) -> Iterator[None]:
    """The calling thread runs ``state``'s call in the wrapper."""
    previous = current()
    _current.state = state
    try:
        yield
    finally:
        _current.state = previous


class CallStates:
    """The calls of this worker that have started, and the ids cancelled before they did."""

    def __init__(self, on_cancel: Callable[[CallState], None] = lambda state: None) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, CallState] = {}
        self._cancelled: OrderedDict[int, None] = OrderedDict()
        self._on_cancel = on_cancel

    def start(self, call_id: int, tag: str, deadline: float) -> CallState:
        """A call about to run; its state says whether it still should (``cancelled``)."""
        state = CallState(call_id, tag, deadline)
        with self._lock:
            if self._cancelled.pop(call_id, 0) is None:
                state.cancel()
            self._running[call_id] = state
        return state

    def end(self, state: CallState) -> None:
        with self._lock:
            self._running.pop(state.call_id, None)

    def cancel(self, call_id: int) -> None:
        """The server says the call's caller is gone (from the cancel thread)."""
        with self._lock:
            state = self._running.get(call_id)
            if state is None:
                self._cancelled[call_id] = None
                while len(self._cancelled) > REMEMBERED:
                    self._cancelled.popitem(last=False)
                return
        state.cancel()
        try:
            self._on_cancel(state)
        except Exception:  # noqa: BLE001 - the wrapper's wrapperCancel
            log.exception("wrapperCancel failed")

    def unwanted(self, call_id: int, deadline: float) -> bool:
        """Whether a call not started yet should not run: cancelled, or past its deadline."""
        if deadline > 0 and time.monotonic() >= deadline:
            return True
        with self._lock:
            return call_id in self._cancelled


class CancelListener:
    """Reads cancelled call ids from the cancel socket, in a thread of its own, until it closes."""

    def __init__(self, sock: socket.socket, states: CallStates) -> None:
        self.sock = sock
        self.states = states
        self.thread = threading.Thread(target=self._listen, name="aiges-cancel", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _listen(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(CANCEL.size * 64)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) - len(pending) % CANCEL.size
            for (call_id,) in CANCEL.iter_unpack(pending[:whole]):
                self.states.cancel(call_id)
            pending = pending[whole:]
