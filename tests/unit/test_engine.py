"""The engine and its pool against workers that run in threads (``fake_workers``): licences,
handles, sessions, output back-pressure, worker death and the watchdog, without processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fake_workers import engine_with_fakes

from aiges.engine.context import RequestContext
from aiges.engine.items import DataItem, DataStatus
from aiges.engine.messages import Expect, Items, ItemsOutput
from aiges.errors import AigesError, ErrorCode

OUT = {"out": Expect(0, {})}


def items(*datas: bytes, status: int = DataStatus.ONCE, **params: str) -> Items:
    return Items([DataItem("in", d, 0, status, {}) for d in datas], dict(params), {}, OUT, "scripted")


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def running(tmp_path, test: Callable[..., Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        engine, launcher, reports = engine_with_fakes(tmp_path, **options)
        await engine.start()
        try:
            await test(engine, launcher)
        finally:
            await engine.stop(timeout_s=2)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_one_shot_call_answers_in_items_and_gives_its_licence_back(tmp_path):
    async def test(engine, launcher):
        output = await engine.once(RequestContext("t1"), items(b"hello"))
        assert isinstance(output, ItemsOutput) and output.status == DataStatus.ONCE
        [item] = output.items
        assert (item.key, bytes(item.data), item.desc["seq"], item.desc["status"]) == ("out", b"hello", "0", "3")
        assert engine.status().licences_used == 0 and engine.idle()

    running(tmp_path, test)


def test_an_output_the_call_did_not_expect_is_10106(tmp_path):
    async def test(engine, launcher):
        frame = items(b"x")._replace(expect={"other": Expect(0, {})})
        with pytest.raises(AigesError) as failure:
            await engine.once(RequestContext("t1"), frame)
        assert failure.value.code == ErrorCode.INVALID_OUTPUT and engine.status().licences_used == 0

    running(tmp_path, test)


def test_licences_limit_concurrent_calls(tmp_path):
    async def test(engine, launcher):
        slow = [asyncio.create_task(engine.once(RequestContext(f"s{i}"), items(b"x", sleep="0.3"))) for i in range(2)]
        await until(lambda: engine.status().licences_used == 2)
        with pytest.raises(AigesError) as failure:
            await engine.once(RequestContext("third"), items(b"x"))
        assert failure.value.code == ErrorCode.LICENSE_NOT_ENOUGH
        await asyncio.gather(*slow)
        assert engine.status().licences_used == 0

    running(tmp_path, test, licences=2)


def test_a_second_first_frame_on_a_busy_handle_is_10105(tmp_path):
    async def test(engine, launcher):
        first = asyncio.create_task(engine.once(RequestContext("same"), items(b"x", sleep="0.2")))
        await until(lambda: engine.status().inflight == 1)
        with pytest.raises(AigesError) as failure:
            await engine.once(RequestContext("same"), items(b"y"))
        assert failure.value.code == ErrorCode.SESSION_REPEAT
        assert bytes((await first).items[0].data) == b"x"
        assert engine.status().licences_used == 0

    running(tmp_path, test)


def test_a_session_streams_in_order_and_is_destroyed_when_it_ends(tmp_path):
    async def test(engine, launcher):
        session = await engine.open(RequestContext("s1"), items(b"a", status=DataStatus.BEGIN))
        for chunk in (b"b", b"c"):
            await engine.write(session, items(chunk, status=DataStatus.CONTINUE)._replace(expect={}))
        await engine.write(session, items(b"d", status=DataStatus.END)._replace(expect={}))
        seen = []
        while not session.closed:
            output = await engine.read(session, 5)
            seen.extend((bytes(i.data), i.desc["seq"]) for i in output.items)
        assert seen == [(b"a", "1"), (b"b", "2"), (b"c", "3"), (b"d", "4")]
        await until(lambda: launcher.plugins[0].destroyed == ["s1"])
        assert engine.status().licences_used == 0 and engine.status().sessions == 0

    running(tmp_path, test)


def test_unread_output_pauses_the_worker_and_reading_resumes_it(tmp_path):
    async def test(engine, launcher):
        plugin = launcher.plugins[0]
        session = await engine.open(RequestContext("flood"), items(b"go", status=DataStatus.END, chunk_kb="64"))
        engine.finish(session)
        await until(lambda: session.paused)
        await asyncio.sleep(0.3)  # the worker polls every 50 ms: paused, it must not read
        reads = plugin.reads
        await asyncio.sleep(0.3)
        assert plugin.reads == reads and session.pending_bytes <= 2 * (256 << 10)
        while session.paused:
            await engine.read(session, 1)
        await until(lambda: plugin.reads > reads)
        engine.close(session)

    running(tmp_path, test, output_kb=256)


def test_a_dead_worker_fails_its_sessions_and_is_replaced(tmp_path):
    async def test(engine, launcher):
        session = await engine.open(RequestContext("doomed"), items(b"a", status=DataStatus.BEGIN))
        with pytest.raises(AigesError):
            await engine.write(session, items(b"die", status=DataStatus.CONTINUE)._replace(expect={}))
        await until(lambda: engine.status().workers_ready == 1 and engine.status().worker_restarts == 1)
        with pytest.raises(AigesError) as failure:
            await engine.read(session, 1)
        assert failure.value.code in (ErrorCode.WORKER_CRASH, ErrorCode.ENGINE_INACTIVE)
        assert engine.status().licences_used == 0
        assert bytes((await engine.once(RequestContext("after"), items(b"ok"))).items[0].data) == b"ok"

    running(tmp_path, test)


def test_queued_calls_move_to_another_worker_when_theirs_dies(tmp_path):
    async def test(engine, launcher):
        dying = asyncio.create_task(engine.once(RequestContext("dies"), items(b"x", mode="die")))
        queued = [asyncio.create_task(engine.once(RequestContext(f"q{i}"), items(b"q"))) for i in range(4)]
        with pytest.raises(AigesError) as failure:
            await dying
        assert failure.value.code == ErrorCode.WRAPPER_EXEC
        assert [bytes(o.items[0].data) for o in await asyncio.gather(*queued)] == [b"q"] * 4

    running(tmp_path, test, workers=2)


def test_the_watchdog_times_out_a_hung_call_and_replaces_its_worker(tmp_path):
    async def test(engine, launcher):
        with pytest.raises(AigesError) as failure:
            await engine.once(RequestContext("hung"), items(b"x", mode="hang"))
        assert failure.value.code == ErrorCode.ONCE_TIMEOUT
        launcher.plugins[0].release.set()
        await until(lambda: engine.status().worker_restarts == 1 and engine.status().workers_ready == 1)
        assert engine.status().licences_used == 0

    running(tmp_path, test, exec_timeout_ms=300)


def test_draining_refuses_new_calls(tmp_path):
    async def test(engine, launcher):
        running_call = asyncio.create_task(engine.once(RequestContext("r"), items(b"x", sleep="0.2")))
        await until(lambda: engine.status().inflight == 1)
        drained = asyncio.create_task(engine.drain(5))
        await until(lambda: engine.draining)
        with pytest.raises(AigesError) as failure:
            await engine.once(RequestContext("late"), items(b"x"))
        assert failure.value.code == ErrorCode.LICENSE_NOT_ENOUGH
        assert await drained and bytes((await running_call).items[0].data) == b"x"

    running(tmp_path, test)
