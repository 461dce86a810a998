"""The pieces of session bookkeeping: licences, the handle table, the input sequencer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiges.engine.admission import Admission
from aiges.engine.context import Caller, RequestContext
from aiges.engine.items import DataItem
from aiges.engine.licences import Licences
from aiges.engine.sessions import RELEASED_RING, Flow, OutputQueue, Session, SessionState, SessionTable
from aiges.errors import AigesError, ErrorCode
from aiges.worker.session_state import Sequencer


def test_licences_run_out_and_come_back():
    licences = Licences(2)
    licences.acquire()
    licences.acquire()
    with pytest.raises(AigesError) as failure:
        licences.acquire()
    assert failure.value.code == ErrorCode.LICENSE_NOT_ENOUGH
    licences.release()
    licences.acquire()
    assert licences.free == 0
    licences.release()
    licences.release()
    with pytest.raises(RuntimeError):
        licences.release()


def session_of(tag: str, app_id: str = "") -> Session:
    admission = Admission.local(RELEASED_RING + 10)
    context = RequestContext(tag, Caller(app_id))
    session = Session(context, admission.admit(context, session=True), OutputQueue(100, 400))
    session.attach(Worker(), "s")
    return session


class Worker:
    index = 0
    ready = True


def test_the_table_tells_unknown_handles_from_ended_ones():
    table = SessionTable()
    session = session_of("h1")
    table.add(session)
    assert table.get("h1") is session
    table.remove(session)
    with pytest.raises(AigesError) as ended:
        table.get("h1")
    assert ended.value.code == ErrorCode.ENGINE_INACTIVE
    with pytest.raises(AigesError) as unknown:
        table.get("never")
    assert unknown.value.code == ErrorCode.INVALID_HANDLE
    for i in range(RELEASED_RING + 1):
        table.remove(session_of(f"x{i}"))
    with pytest.raises(AigesError) as forgotten:
        table.get("h1")
    assert forgotten.value.code == ErrorCode.INVALID_HANDLE


def test_another_apps_handle_is_unknown_whether_open_or_ended():
    table = SessionTable()
    session = session_of("h1", app_id="a1")
    table.add(session)
    assert table.get("h1", Caller("a1")) is session
    for caller in (Caller("a2"), Caller("")):
        with pytest.raises(AigesError) as refused:
            table.get("h1", caller)
        assert refused.value.code == ErrorCode.INVALID_HANDLE
    table.remove(session)
    with pytest.raises(AigesError) as other:
        table.get("h1", Caller("a2"))
    assert other.value.code == ErrorCode.INVALID_HANDLE
    with pytest.raises(AigesError) as own:
        table.get("h1", Caller("a1"))
    assert own.value.code == ErrorCode.ENGINE_INACTIVE


def test_a_session_fails_once_and_releases_its_ticket_once():
    session = session_of("h1")
    first, second = AigesError(ErrorCode.WRAPPER_READ), AigesError(ErrorCode.WORKER_CRASH)
    session.fail(first)
    session.fail(second)
    with pytest.raises(AigesError) as raised:
        session.check_alive()
    assert raised.value is first and session.state is SessionState.FAILED
    assert session.close() and not session.close()
    assert not session.ticket.held and session.state is SessionState.CLOSED
    with pytest.raises(AigesError) as again:
        session.check_alive()
    assert again.value is first
    with pytest.raises(RuntimeError):
        session.attach(Worker(), "s")


def test_the_output_queue_pauses_past_its_budget_and_resumes_under_half():
    queue = OutputQueue(budget=100, limit=400)
    assert queue.push(b"x" * 60, False) is Flow.KEEP
    assert queue.push(b"x" * 60, False) is Flow.PAUSE and queue.paused
    assert queue.push(b"x" * 60, False) is Flow.KEEP  # paused already
    assert queue.pop()[2] is Flow.KEEP  # 120 left: over half the budget
    assert queue.pop()[2] is Flow.KEEP and queue.paused  # 60 left
    assert queue.pop()[2] is Flow.RESUME and not queue.paused
    assert queue.push(b"x" * 500, True) is Flow.OVERFLOW
    queue.push_front([(b"ab", False)])
    assert queue.pop()[0] == b"ab"


def frame(n: int) -> list[DataItem]:
    return [DataItem("in", str(n).encode())]


@given(st.permutations(list(range(1, 12))))
def test_the_sequencer_delivers_every_frame_once_in_order(order):
    sequencer = Sequencer(1)
    delivered = []
    for n in order:
        delivered.extend(int(f[0].data) for f in sequencer.push(n, frame(n)))
        delivered.extend(int(f[0].data) for f in sequencer.push(n, frame(n)))  # a repeat is dropped
    assert delivered == list(range(1, 12))


def test_the_sequencer_skips_a_gap_on_request():
    sequencer = Sequencer(1)
    assert sequencer.push(3, frame(3)) == []
    assert [int(f[0].data) for f in sequencer.skip_gap()] == [3]
    assert sequencer.push(2, frame(2)) == []  # behind the cursor now
    assert [int(f[0].data) for f in sequencer.push(4, frame(4))] == [4]
