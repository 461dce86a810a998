"""The pieces of session bookkeeping: licences, the handle table, the input sequencer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiges.engine.items import DataItem
from aiges.engine.licences import Licences
from aiges.engine.sessions import RELEASED_RING, Session, SessionTable
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


def test_the_table_tells_unknown_handles_from_ended_ones():
    table = SessionTable()
    session = Session(tag="h1", worker=None, service_id="s")  # type: ignore[arg-type]
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
        table.remove(Session(tag=f"x{i}", worker=None, service_id="s"))  # type: ignore[arg-type]
    with pytest.raises(AigesError) as forgotten:
        table.get("h1")
    assert forgotten.value.code == ErrorCode.INVALID_HANDLE


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
