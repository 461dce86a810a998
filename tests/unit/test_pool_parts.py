"""The pool's parts one by one: a worker's call queue, its service-time estimate, the worker state
machine with its holding and watchdog (over a real socket pair, the test playing the worker
process), the slots' roles; then, on the real pool with thread workers, session attach/detach,
the per-worker loads and withdrawing a call that was not sent."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from fake_workers import engine_with_fakes

from aiges.engine import ipc
from aiges.engine.context import RequestContext
from aiges.engine.items import DataItem, DataStatus, WorkerInfo
from aiges.engine.messages import (
    CallContext,
    Done,
    Expect,
    Failed,
    Items,
    Once,
    OnceReply,
    Pause,
    Report,
    SessionFailed,
    SessionOutput,
    Started,
    Timings,
    WorkerSettings,
)
from aiges.engine.pool import PendingCall, ServiceTime, SlotRole, Worker, WorkerSlot, WorkerState
from aiges.engine.pool.calls import CallQueue
from aiges.errors import AigesError, ErrorCode

SETTINGS = WorkerSettings("w.py", {}, True, (), "test:1", 1, 0, False, "warning")
INFO = WorkerInfo(worker_id=0, pid=1, gpu="", style="test")
OUT = {"out": Expect(0, {})}


def once(call_id: int) -> Once:
    return Once(call_id, CallContext(f"t{call_id}"), Items([], {}, {}, {}))


def pending(call_id: int, retryable: bool = True) -> PendingCall:
    return PendingCall(asyncio.get_running_loop().create_future(), once(call_id), time.monotonic(), retryable)


def answer(call_id: int, exec_s: float = 0.0) -> Done:
    now = time.monotonic()
    return Done(call_id, OnceReply(b"ok"), Timings(now - exec_s, now - exec_s, now - exec_s, now))


def run(test: Any) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def settle() -> None:
    """Let the event loop run what is scheduled (a channel's flush is one call_soon away)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- the call queue -------------------------------------------------------------------------------


def test_the_queue_keeps_sent_calls_then_held_ones_and_counts_what_has_not_started():
    async def test() -> None:
        queue = CallQueue()
        a, b, c, d = (pending(i) for i in (1, 2, 3, 4))
        queue.sent(a)
        queue.sent(b)
        queue.hold(c)
        queue.hold(Pause("s"))
        queue.hold(d)
        assert queue.head is a and len(queue) == 4 and queue.in_flight == 2 and queue.held == 2
        assert queue.queued == 3  # b waits in the worker's socket, c and d here; a runs
        queue.mark_started([1, 2])  # a and b run as one batch
        assert queue.queued == 2
        assert queue.withdraw(c) and not queue.withdraw(b) and not queue.withdraw(c)
        assert queue.queued == 1 and queue.held == 1
        assert queue.answered(1) is a and queue.head is b and queue.answered(1) is None
        released = queue.release()
        assert released == [Pause("s"), d] and queue.held == 0 and queue.in_flight == 2 and not queue.holding
        assert queue.find_held(4) is None
        assert queue.drain() == [b, d] and not queue and queue.queued == 0

    run(test)


def test_a_timed_out_head_is_taken_out_with_the_calls_of_its_batch():
    async def test() -> None:
        queue = CallQueue()
        calls = [pending(i) for i in (1, 2, 3)]
        for call in calls:
            queue.sent(call)
        queue.mark_started([1, 2])
        assert queue.expire_head() == calls[:2] and queue.head is calls[2] and queue.queued == 0

    run(test)


def test_the_service_time_is_an_exponentially_weighted_mean_of_exec_times():
    estimate = ServiceTime(alpha=0.5)
    assert estimate.seconds is None
    estimate.observe(0.2)
    assert estimate.seconds == pytest.approx(0.2)
    estimate.observe(0.4)
    assert estimate.seconds == pytest.approx(0.3)
    estimate.observe(-1.0)  # a clock step never makes it negative
    assert estimate.seconds == pytest.approx(0.15) and estimate.samples == 3
    with pytest.raises(ValueError):
        ServiceTime(alpha=0)


# -- a worker, the test at the other end of its socket ---------------------------------------------


class Heard:
    """What the worker told the pool and the engine."""

    def __init__(self) -> None:
        self.states: list[WorkerState] = []
        self.ready: list[WorkerInfo] = []
        self.closed = 0
        self.answered = 0
        self.said: list[Any] = []

    def on_state_changed(self, worker: Worker) -> None:
        self.states.append(worker.state)

    def on_ready(self, worker: Worker, info: WorkerInfo) -> None:
        self.ready.append(info)

    def on_closed(self, worker: Worker) -> None:
        self.closed += 1

    def on_answered(self, worker: Worker) -> None:
        self.answered += 1

    def on_output(self, message: SessionOutput) -> None:
        self.said.append(message)

    def on_output_failed(self, message: SessionFailed) -> None:
        self.said.append(message)

    def on_report(self, message: Report) -> None:
        self.said.append(message)


def worker_and_peer(batch_size: int = 1) -> tuple[Worker, ipc.BlockingChannel, socket.socket, Heard]:
    ours, theirs = socket.socketpair()
    heard = Heard()
    slot = WorkerSlot(0, "", SETTINGS)
    worker = Worker(slot, ours, None, SETTINGS._replace(batch_size=batch_size), heard, heard)
    slot.worker = worker
    return worker, ipc.BlockingChannel(theirs), theirs, heard


def nothing_arrived(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)
    return False


async def received(peer: ipc.BlockingChannel) -> list[Any]:
    messages = await asyncio.to_thread(peer.recv, 10)
    for _ in messages:
        peer.done()
    return messages


def test_worker_states_move_only_forward_and_an_impossible_move_is_refused():
    async def test() -> None:
        worker, peer, _, heard = worker_and_peer()
        assert worker.state is WorkerState.STARTING and not worker.ready
        assert worker.mark_ready(INFO) and worker.ready and worker.started.result() is INFO
        assert not worker.mark_ready(INFO)  # READY -> READY is refused
        worker.kill("test")  # no process: only the state moves
        assert worker.state is WorkerState.STOPPING and worker.kill_reason == "test"
        assert not worker.mark_ready(INFO) and worker.state is WorkerState.STOPPING
        peer.close()  # the process is gone
        await asyncio.wait_for(until_dead(worker), 10)
        assert heard.states == [WorkerState.READY, WorkerState.STOPPING, WorkerState.DEAD] and heard.closed == 1
        worker.ask_to_exit()  # nothing to do any more
        assert worker.state is WorkerState.DEAD and not worker.mark_ready(INFO)
        worker.close()

    run(test)


async def until_dead(worker: Worker) -> None:
    while worker.state is not WorkerState.DEAD:
        await asyncio.sleep(0.01)


def test_a_busy_worker_gets_its_next_calls_held_and_sent_together_with_its_next_answer():
    async def test() -> None:
        worker, peer, theirs, _ = worker_and_peer()
        worker.mark_ready(INFO)
        a, b, c, d = (pending(i) for i in (1, 2, 3, 4))
        sent_at = time.monotonic()
        assert worker.submit(a)
        assert [m.call_id for m in await received(peer)] == [1]  # idle: sent at once
        for call in (b, c, d):
            assert worker.submit(call)
        worker.notify(Pause("s"))  # keeps its place behind the held calls
        await settle()
        assert nothing_arrived(theirs) and worker.calls.held == 3 and worker.queued == 3
        assert worker.withdraw(c) and c.future.cancelled() and worker.queued == 2
        peer.send(answer(1, exec_s=0.25))
        assert await a.future == OnceReply(b"ok") and a.worker is worker
        held_for = time.monotonic() - sent_at
        assert [getattr(m, "call_id", m) for m in await received(peer)] == [2, 4, Pause("s")]
        assert not worker.withdraw(b)  # sent: the worker will run it
        # how long the call held the worker as the server saw it (not the 0.25 s the answer claims)
        assert worker.service_time.seconds is not None and 0 < worker.service_time.seconds <= held_for
        peer.send(Failed(2, ErrorCode.WRAPPER_EXEC, "no", answer(2).timings))
        with pytest.raises(AigesError) as failure:
            await b.future
        assert failure.value.code == ErrorCode.WRAPPER_EXEC and worker.calls.in_flight == 1
        worker.close()

    run(test)


def test_with_batching_on_nothing_is_held_and_started_calls_are_not_counted_as_queued():
    async def test() -> None:
        worker, peer, _, _ = worker_and_peer(batch_size=4)
        worker.mark_ready(INFO)
        calls = [pending(i) for i in (1, 2, 3)]
        for call in calls:
            worker.submit(call)
        got: list[int] = []
        while len(got) < 3:
            got.extend(m.call_id for m in await received(peer))
        assert got == [1, 2, 3] and worker.calls.held == 0 and worker.queued == 2
        peer.send(Started([1, 2, 3]))
        await until(lambda: worker.queued == 0)
        worker.close()

    run(test)


async def until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_the_watchdog_times_the_head_call_from_the_previous_answer():
    async def test() -> None:
        worker, peer, _, _ = worker_and_peer()
        worker.mark_ready(INFO)
        first, second = pending(1, retryable=False), pending(2)
        worker.submit(first)
        worker.submit(second)
        await received(peer)
        peer.send(answer(1))
        await first.future
        await received(peer)  # the second, released by the first's answer
        started = worker.last_reply_at
        assert not worker.watch(started + 0.9, 1000)  # 0.9 s into its run: within 1000 ms
        assert worker.watch(started + 1.1, 1000)
        with pytest.raises(AigesError) as failure:
            await second.future
        assert failure.value.code == ErrorCode.ONCE_TIMEOUT and worker.state is WorkerState.STOPPING
        assert worker.lose_calls() == ([], [])
        worker.close()

    run(test)


def test_a_dead_worker_gives_back_the_calls_it_never_started():
    async def test() -> None:
        worker, _, _, _ = worker_and_peer()
        worker.mark_ready(INFO)
        calls = [pending(i) for i in (1, 2, 3)]
        for call in calls:
            worker.submit(call)
        ran, unstarted = worker.lose_calls()
        assert ran == calls[:1] and unstarted == calls[1:] and not worker.calls
        worker.close()

    run(test)


def test_sessions_detach_at_most_as_often_as_they_attach():
    async def test() -> None:
        worker, _, _, _ = worker_and_peer()
        worker.attach_session()
        assert worker.detach_session() and not worker.detach_session() and worker.sessions == 0
        worker.close()

    run(test)


def test_slot_roles_move_one_way():
    slot = WorkerSlot(0, "", SETTINGS, generation=2, role=SlotRole.INCOMING)
    assert slot.takes_new_calls() and slot.promote() and slot.role is SlotRole.SERVING
    assert not slot.promote()  # SERVING -> SERVING
    assert slot.retire() and not slot.takes_new_calls()
    assert not slot.promote() and slot.role is SlotRole.RETIRING
    slot.start_failed()
    slot.start_failed()
    assert slot.failed_starts == 2
    slot.start_succeeded()
    assert slot.failed_starts == 0


# -- the pool, with thread workers ----------------------------------------------------------------


def items(*datas: bytes, status: int = DataStatus.ONCE, **params: str) -> Items:
    return Items([DataItem("in", d, 0, status, {}) for d in datas], dict(params), {}, OUT, "scripted")


def running(tmp_path: Any, test: Any, **options: Any) -> None:
    async def main() -> None:
        engine, launcher, _ = engine_with_fakes(tmp_path, **options)
        await engine.start()
        try:
            await test(engine, launcher)
        finally:
            await engine.stop(timeout_s=2)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_pool_attaches_a_session_to_its_worker_and_detaches_it_when_it_ends(tmp_path):
    async def test(engine: Any, launcher: Any) -> None:
        pool = engine.pool
        session = await engine.open(RequestContext("s1"), items(b"a", status=DataStatus.BEGIN))
        worker = session.worker
        assert worker.sessions == 1 and worker.load == 1
        other = await engine.open(RequestContext("s2"), items(b"a", status=DataStatus.BEGIN))
        assert other.worker is not worker  # the least loaded took it
        engine.close(session)
        await until(lambda: worker.sessions == 0)
        engine.close(other, destroy=False)  # ended without a destroy: detached all the same
        assert other.worker.sessions == 0
        assert [load.sessions for load in pool.loads()] == [0, 0]

    running(tmp_path, test, workers=2)


def test_a_first_frame_waits_in_the_server_and_can_be_withdrawn_until_a_worker_has_it(tmp_path):
    async def test(engine: Any, launcher: Any) -> None:
        pool = engine.pool
        frame = items(b"x", mode="hang")
        hung = asyncio.ensure_future(pool.once(Once(pool.new_id(), CallContext("hung"), frame)))
        await until(lambda: pool.loads()[0].in_flight == 1)
        message = Once(pool.new_id(), CallContext("queued"), items(b"y"))
        queued = asyncio.ensure_future(pool.once(message))
        await until(lambda: len(pool.dispatcher.waiting) == 1)  # it waits in the server, not the worker
        assert pool.loads()[0].queued == 0
        assert pool.withdraw(message.call_id) and not pool.withdraw(message.call_id)
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert len(pool.dispatcher.waiting) == 0
        launcher.plugins[0].release.set()
        await hung
        load = pool.loads()[0]
        assert load.in_flight == 0 and load.service_s is not None and load.service_s > 0
        assert bytes((await engine.once(RequestContext("after"), items(b"z"))).items[0].data) == b"z"

    running(tmp_path, test)
