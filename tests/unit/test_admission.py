"""The one admission point: licences, the apps' rates and sessions, draining, one release path."""

from __future__ import annotations

import pytest

from aiges.engine.admission import Admission
from aiges.engine.context import Caller, Quota, RequestContext
from aiges.errors import AigesError, ErrorCode


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def call(app_id: str = "", quota: Quota | None = None) -> RequestContext:
    return RequestContext("tag", Caller(app_id, quota=quota))


def refusal(admission: Admission, context: RequestContext, session: bool = False) -> int:
    with pytest.raises(AigesError) as caught:
        admission.admit(context, session=session)
    return caught.value.code


def test_licences_are_held_by_tickets_released_once():
    admission = Admission.local(2)
    first = admission.admit(call(), session=False)
    second = admission.admit(call(), session=True)
    assert refusal(admission, call()) == ErrorCode.LICENSE_NOT_ENOUGH
    first.release()
    first.release()  # a second release gives nothing back twice
    assert admission.used == 1 and not first.held
    third = admission.admit(call(), session=False)
    assert admission.used == admission.total
    second.release()
    third.release()
    assert admission.used == 0


def test_an_apps_rate_is_a_token_bucket():
    clock = Clock()
    admission = Admission.local(100, clock)
    rated = call("rated", Quota(rate=2, burst=2))
    admission.admit(rated, session=False).release()
    admission.admit(rated, session=False).release()
    assert refusal(admission, rated) == ErrorCode.APP_RATE
    clock.now = 0.5  # one token back
    admission.admit(rated, session=False).release()
    assert refusal(admission, rated) == ErrorCode.APP_RATE
    free = call("free", Quota())
    for _ in range(100):
        admission.admit(free, session=False).release()
    assert admission.used == 0


def test_an_apps_sessions_are_counted_from_admission_to_release():
    admission = Admission.local(100)
    app = call("a1", Quota(max_sessions=2))
    sessions = [admission.admit(app, session=True) for _ in range(2)]
    assert refusal(admission, app, session=True) == ErrorCode.APP_SESSIONS
    admission.admit(app, session=False).release()  # one-shot calls are not sessions
    assert admission.apps.sessions("a1") == 2
    sessions[0].release()
    sessions[0].release()
    assert admission.apps.sessions("a1") == 1
    admission.admit(app, session=True)
    other = call("a2", Quota(max_sessions=1))
    admission.admit(other, session=True)  # another app's limit is its own
    assert refusal(admission, other, session=True) == ErrorCode.APP_SESSIONS
    assert (admission.apps.sessions("a1"), admission.apps.sessions("a2")) == (2, 1)


def test_a_refused_call_holds_nothing():
    admission = Admission.local(1)
    app = call("a1", Quota(max_sessions=1))
    held = admission.admit(app, session=True)
    assert refusal(admission, app, session=True) == ErrorCode.APP_SESSIONS
    assert admission.used == 1 and admission.apps.sessions("a1") == 1
    held.release()
    assert admission.used == 0 and admission.apps.sessions("a1") == 0


def test_draining_refuses_everything_new():
    admission = Admission.local(10)
    running = admission.admit(call(), session=False)
    admission.draining = True
    assert refusal(admission, call()) == ErrorCode.LICENSE_NOT_ENOUGH
    assert refusal(admission, call("a1", Quota()), session=True) == ErrorCode.LICENSE_NOT_ENOUGH
    running.release()
    assert admission.used == 0
