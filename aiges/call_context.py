"""``aiges.sdk.call_context()``: the call the wrapper is running, as its code sees it.

    context = call_context()
    context.deadline      # absolute time.time() by which the caller wants the answer, or None
    context.remaining()   # seconds left (negative once past), or None
    context.cancelled     # True once the caller has gone or the deadline has passed

Usable from the thread that runs ``wrapperOnceExec``, ``wrapperCreate`` or ``wrapperWrite`` (the
class style), the module functions of the function style, and a python_wrapper's methods. A
cooperative wrapper checks ``cancelled`` between steps of long work and stops early: the caller
is not waiting any more. Outside a call (``wrapperInit``, a thread of the wrapper's own) the
context has no deadline and is never cancelled. Inside ``wrapperBatchExec`` it is that of no
single call: no deadline, never cancelled.
"""

from __future__ import annotations

import time

from aiges.worker.call_state import CallState, current


class CallContext:
    __slots__ = ("_state",)

    def __init__(self, state: CallState | None) -> None:
        self._state = state

    @property
    def deadline(self) -> float | None:
        """The caller's deadline as a ``time.time()`` value, or None."""
        remaining = self.remaining()
        return None if remaining is None else time.time() + remaining

    def remaining(self) -> float | None:
        """Seconds left before the deadline (negative once it passed), or None without one."""
        return self._state.remaining() if self._state is not None else None

    @property
    def cancelled(self) -> bool:
        """The caller went away, or the deadline passed: nobody waits for the answer."""
        return self._state is not None and self._state.cancelled

    def __repr__(self) -> str:
        return f"CallContext(remaining={self.remaining()!r}, cancelled={self.cancelled!r})"


def call_context() -> CallContext:
    """The context of the call the calling thread runs in the wrapper."""
    return CallContext(current())
