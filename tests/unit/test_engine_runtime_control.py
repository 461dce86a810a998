"""Runtime control against the real engine and pool (workers in threads, ``fake_workers``):
licence resize (AILBType), personalised resources (AILoad / AIUnLoad, replayed to a restarted
worker), and reload (a new generation of workers while the old one finishes its sessions)."""

from __future__ import annotations

import asyncio

import pytest
from test_engine import items, running, until

from aiges.engine.context import RequestContext
from aiges.engine.items import DataItem, DataStatus
from aiges.errors import AigesError, ErrorCode

RESOURCE_PARAM = "aiges.res_ids"


async def text_of(engine, tag: str, data: bytes = b"x", **params: str) -> bytes:
    output = await engine.once(RequestContext(tag), items(data, **params))
    return bytes(output.items[0].data)


async def failure_of(call) -> int:
    with pytest.raises(AigesError) as failure:
        await call
    return failure.value.code


def word(data: bytes) -> list[DataItem]:
    return [DataItem("words", data, 0, DataStatus.ONCE, {})]


# -- licences ------------------------------------------------------------------------------------------


def test_growing_the_licences_admits_more_at_once(tmp_path):
    async def test(engine, launcher):
        slow = [asyncio.create_task(engine.once(RequestContext(f"s{i}"), items(b"x", sleep="0.3"))) for i in range(2)]
        await until(lambda: engine.status().licences_used == 2)
        await engine.resize_licences(4, 0)
        third = await engine.once(RequestContext("third"), items(b"x"))
        assert bytes(third.items[0].data) == b"x" and engine.status().licences_total == 4
        await asyncio.gather(*slow)

    running(tmp_path, test, licences=2)


def test_shrinking_waits_for_sessions_to_end_and_cuts_none(tmp_path):
    async def test(engine, launcher):
        sessions = [await engine.open(RequestContext(f"s{i}"), items(b"a", status=DataStatus.BEGIN)) for i in range(3)]
        resize = asyncio.create_task(engine.resize_licences(2, 5, "hermes"))
        await until(lambda: engine.status().licences_total == 2)
        assert await failure_of(engine.once(RequestContext("refused"), items(b"x"))) == ErrorCode.LICENSE_NOT_ENOUGH
        assert not resize.done()
        for session in sessions:  # the running sessions are untouched
            await engine.write(session, items(b"more", status=DataStatus.CONTINUE)._replace(expect={}))
            assert (await engine.read(session, 5)) is not None
        engine.close(sessions[0])
        await asyncio.wait_for(resize, 5)
        assert engine.status().licences_total == 2 and engine.lb_type == "hermes"
        assert await failure_of(engine.once(RequestContext("still full"), items(b"x"))) == ErrorCode.LICENSE_NOT_ENOUGH
        engine.close(sessions[1])
        assert await text_of(engine, "fits") == b"x"
        engine.close(sessions[2])

    running(tmp_path, test, licences=4)


def test_a_shrink_that_does_not_fit_in_its_timeout_is_10104_and_changes_nothing(tmp_path):
    async def test(engine, launcher):
        sessions = [await engine.open(RequestContext(f"s{i}"), items(b"a", status=DataStatus.BEGIN)) for i in range(3)]
        assert await failure_of(engine.resize_licences(1, 0.2, "other")) == ErrorCode.ELASTIC_LICENCE
        status = engine.status()
        assert (status.licences_total, status.licences_used, status.sessions, engine.lb_type) == (4, 3, 3, "")
        assert await text_of(engine, "admitted") == b"x"
        for session in sessions:
            await engine.write(session, items(b"on", status=DataStatus.CONTINUE)._replace(expect={}))
        assert await failure_of(engine.resize_licences(0, 1)) == ErrorCode.INVALID_PARAM_VALUE

    running(tmp_path, test, licences=4)


# -- personalised resources ------------------------------------------------------------------------------


def test_a_resource_is_loaded_in_every_worker_and_unloaded_from_all(tmp_path):
    async def test(engine, launcher):
        assert (
            await failure_of(engine.once(RequestContext("early"), items(b"x", **{RESOURCE_PARAM: "7"})))
            == ErrorCode.RESOURCE_UNKNOWN
        )
        await engine.load_resource(7, word(b"seven"))
        assert [p.resources for p in launcher.plugins] == [{7: b"seven"}, {7: b"seven"}]
        calls = [
            engine.once(RequestContext(f"c{i}"), items(b"x", sleep="0.05", **{RESOURCE_PARAM: "7"})) for i in range(6)
        ]
        assert {bytes(o.items[0].data) for o in await asyncio.gather(*calls)} == {b"x +seven"}
        assert await text_of(engine, "plain") == b"x"
        status = engine.status()
        assert (status.resources, status.resources_bytes) == (1, 5)
        await engine.unload_resource(7)
        assert [p.resources for p in launcher.plugins] == [{}, {}]
        assert (
            await failure_of(engine.once(RequestContext("gone"), items(b"x", **{RESOURCE_PARAM: "7"})))
            == ErrorCode.RESOURCE_UNKNOWN
        )
        assert await failure_of(engine.unload_resource(7)) == ErrorCode.RESOURCE_UNKNOWN
        bad = items(b"x", **{RESOURCE_PARAM: "seven"})
        assert await failure_of(engine.once(RequestContext("bad"), bad)) == ErrorCode.INVALID_PARAM_VALUE

    running(tmp_path, test, workers=2)


def test_a_restarted_worker_loads_the_kept_resources_before_it_serves(tmp_path):
    async def test(engine, launcher):
        await engine.load_resource(3, word(b"three"))
        await engine.load_resource(3, word(b"THREE"))  # a loaded id: replaced
        await engine.load_resource(4, word(b"four"))
        assert await failure_of(engine.once(RequestContext("dies"), items(b"x", mode="die"))) == ErrorCode.WRAPPER_EXEC
        await until(lambda: engine.status().worker_restarts == 1 and engine.status().workers_ready == 1)
        assert launcher.plugins[-1].resources == {3: b"THREE", 4: b"four"}
        assert await text_of(engine, "after", **{RESOURCE_PARAM: "4,3"}) == b"x +four +THREE"

    running(tmp_path, test)


def test_a_resource_any_worker_refuses_is_kept_by_none(tmp_path):
    async def test(engine, launcher):
        await engine.load_resource(1, word(b"one"))
        assert await failure_of(engine.load_resource(2, word(b"refuse"))) == ErrorCode.WRAPPER_LOAD
        assert await failure_of(engine.load_resource(1, word(b"refuse"))) == ErrorCode.WRAPPER_LOAD
        assert [p.resources for p in launcher.plugins] == [{1: b"one"}, {1: b"one"}]
        assert engine.status().resources == 1
        assert await text_of(engine, "kept", **{RESOURCE_PARAM: "1"}) == b"x +one"

    running(tmp_path, test, workers=2)


def test_the_resource_bounds_are_10121(tmp_path):
    async def test(engine, launcher):
        await engine.load_resource(1, word(b"a" * 60))
        assert await failure_of(engine.load_resource(2, word(b"b" * 50))) == ErrorCode.RESOURCE_LIMIT
        await engine.load_resource(1, word(b"a" * 100))  # replacing counts the new size only
        await engine.load_resource(2, word(b"b"))
        assert await failure_of(engine.load_resource(3, word(b"c"))) == ErrorCode.RESOURCE_LIMIT
        assert engine.status().resources == 2

    running(tmp_path, test, resource_count=2, resource_bytes=101)


# -- reload ---------------------------------------------------------------------------------------------


def test_a_reload_sends_new_calls_to_new_workers_and_lets_old_sessions_finish(tmp_path):
    async def test(engine, launcher):
        await engine.load_resource(5, word(b"five"))
        old = await engine.open(RequestContext("old"), items(b"a", status=DataStatus.BEGIN))
        old_worker = old.worker
        settings = engine.settings.pool.worker._replace(config={"mark": "-v2"})
        outcome = await engine.reload(settings, drain_timeout_s=10)
        assert outcome.ok and outcome.generation == 2 and outcome.retiring == 2
        assert await text_of(engine, "new", **{RESOURCE_PARAM: "5"}) == b"x +five-v2"
        status = engine.status()
        assert [w.generation for w in status.workers] == [2, 2] and len(status.retiring) == 2
        assert status.workers_ready == 2
        new = await engine.open(RequestContext("new-session"), items(b"n", status=DataStatus.BEGIN))
        assert new.worker.slot.generation == 2
        for chunk in (b"b", b"c"):  # the old session goes on, on its old worker
            await engine.write(old, items(chunk, status=DataStatus.CONTINUE)._replace(expect={}))
        await engine.write(old, items(b"d", status=DataStatus.END)._replace(expect={}))
        seen = []
        while not old.closed:
            output = await engine.read(old, 5)
            seen.extend(bytes(i.data) for i in output.items)
        assert seen == [b"a", b"b", b"c", b"d"] and old.worker is old_worker
        await until(lambda: not engine.status().retiring)  # then the old workers stop
        assert old_worker.state.value == "dead" and engine.status().workers_ready == 2
        engine.close(new)

    running(tmp_path, test, workers=2)


def test_a_reload_whose_wrapper_fails_its_init_leaves_the_old_workers_serving(tmp_path):
    async def test(engine, launcher):
        pids = [w.pid for w in engine.status().workers]
        settings = engine.settings.pool.worker._replace(config={"fail_init": "1"})
        outcome = await engine.reload(settings, drain_timeout_s=1)
        assert not outcome.ok and "asked to fail its init" in outcome.error and outcome.generation == 1
        await until(lambda: not engine.status().retiring)
        status = engine.status()
        assert [w.pid for w in status.workers] == pids and status.generation == 1 and status.live
        assert await text_of(engine, "still") == b"x"

    running(tmp_path, test, workers=2)


def test_a_reload_is_refused_while_one_runs(tmp_path):
    async def test(engine, launcher):
        await engine.load_resource(1, word(b"slow"))  # each new worker takes 0.3 s to load it
        settings = engine.settings.pool.worker._replace(config={"mark": "-v2"})
        first = asyncio.create_task(engine.reload(settings, 1))
        await until(lambda: engine.status().reloading)
        assert await failure_of(engine.reload(settings, 1)) == ErrorCode.WRAPPER_INIT
        assert (await first).ok

    running(tmp_path, test)
