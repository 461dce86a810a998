"""Streaming sessions over the xsf ops and over the native bidi stream, against a real server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import wait_for
from test_operations import status

from aiges.client import AigesCallError
from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput

TRANSPORTS = ["xsf", "stream"]


def collect(session) -> list:
    return [item for batch in session.results() for item in batch.items]


@pytest.fixture
def destroy_log(tmp_path) -> Path:
    return tmp_path / "destroyed.txt"


def destroyed(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_full_session_of_100_chunks_arrives_in_order(serve, transport):
    server = serve("streamer")
    with server.client() as client, client.session(expect=["out"], transport=transport) as session:
        for i in range(100):
            session.write({"in": f"chunk-{i}".encode()}, last=(i == 99))
        items = collect(session)
    assert [i.data for i in items] == [f"chunk-{i}".encode() for i in range(100)]
    assert [i.attributes["seq"] for i in items] == [str(i + 1) for i in range(100)]
    assert items[-1].status == 2 and all(i.status == 1 for i in items[:-1])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_output_only_at_the_end(serve, transport):
    server = serve("streamer")
    with (
        server.client() as client,
        client.session(params={"mode": "collect"}, expect=["out"], transport=transport) as session,
    ):
        for i in range(5):
            session.write({"in": str(i).encode()}, last=(i == 4))
        [item] = collect(session)
    assert item.data == b"0|1|2|3|4"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_results_pushed_from_a_wrapper_thread(serve, transport):
    server = serve("streamer")
    with (
        server.client() as client,
        client.session(params={"mode": "async"}, expect=["out"], transport=transport) as session,
    ):
        for i in range(10):
            session.write({"in": f"a{i}".encode()}, last=(i == 9))
        items = collect(session)
    assert [i.data for i in items] == [f"A{i}".encode() for i in range(10)]


def test_first_frame_payloads_are_written(serve):
    server = serve("streamer")
    with server.client() as client, client.session({"in": b"first"}, expect=["out"]) as session:
        session.write({"in": b"second"}, last=True)
        assert [i.data for i in collect(session)] == [b"first", b"second"]


def test_swapped_sync_ids_are_reordered(serve):
    server = serve("streamer")
    with server.client() as client:
        session = client.session(params={"mode": "collect"}, expect=["out"])
        session.write({"in": b"three"}, sync_id=3, last=True)
        session.write({"in": b"one"}, sync_id=1)
        session.write({"in": b"stale"}, sync_id=1)
        session.write({"in": b"two"}, sync_id=2)
        [item] = collect(session)
    assert item.data == b"one|two|three"


def test_a_large_frame_held_for_an_earlier_one_survives_the_ring_being_reused(serve):
    """Frames of 300 KiB travel as views of a 1 MiB ring; the one that waits for its turn is
    kept while the ring wraps around under the frames before it."""
    server = serve("streamer", shm_mb=1)
    frames = {n: bytes([n]) * (300 << 10) for n in range(1, 6)}
    with server.client() as client:
        session = client.session(params={"mode": "collect"}, expect=["out"])
        session.write({"in": frames[5]}, sync_id=5, last=True)
        for n in range(1, 5):
            session.write({"in": frames[n]}, sync_id=n)
        [item] = collect(session)
    assert item.data == b"|".join(frames[n] for n in range(1, 6))


def test_a_gap_is_skipped_after_waiting(serve):
    server = serve("streamer")
    with server.client() as client:
        session = client.session(params={"mode": "collect"}, expect=["out"], wait_ms=1000)
        session.write({"in": b"one"}, sync_id=1)
        session.write({"in": b"three"}, sync_id=3, last=True)
        started = time.monotonic()
        [item] = collect(session)
    assert item.data == b"one|three"
    assert time.monotonic() - started > 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_20_concurrent_sessions_on_2_workers(serve, transport):
    server = serve("streamer", workers=2, licences=32)
    with server.client() as client:

        def run(n: int) -> list[bytes]:
            with client.session(expect=["out"], transport=transport) as session:
                for i in range(10):
                    session.write({"in": f"{n}:{i}".encode()}, last=(i == 9))
                return [i.data for i in collect(session)]

        with ThreadPoolExecutor(20) as executor:
            results = list(executor.map(run, range(20)))
    assert results == [[f"{n}:{i}".encode() for i in range(10)] for n in range(20)]


def open_raw(client):
    message = loader_input(state=LoaderInput.STREAM, expect=["out"])
    return client.call("AIIn", message, params={"SeqNo": "1"})


def test_licences_run_out_and_come_back(serve):
    server = serve("streamer", licences=2)
    with server.client() as client:
        first = client.session(expect=["out"])
        second = client.session(expect=["out"])
        code, error, _, output = open_raw(client)
        assert code == 10110 and output.code == 10110 and "license" in error
        once = client.once({"in": b"x"}, expect=["out"], check=False)
        assert once.code == 10110
        first.close()
        third = client.session(expect=["out"])
        third.write({"in": b"ok"}, last=True)
        assert [i.data for i in collect(third)] == [b"ok"]
        second.close()


def test_one_shot_calls_share_the_licences_with_sessions(serve):
    server = serve("streamer", licences=3)
    with server.client() as client:
        sessions = [client.session(expect=["out"]) for _ in range(2)]
        assert client.once({"in": b"x"}, expect=["out"])["out"] == b"once"
        sessions.append(client.session(expect=["out"]))
        assert client.once({"in": b"x"}, expect=["out"], check=False).code == 10110
        for session in sessions:
            session.close()
        assert client.once({"in": b"x"}, expect=["out"])["out"] == b"once"


def test_idle_sessions_expire_and_are_destroyed(serve, destroy_log):
    server = serve("streamer", licences=1, ttl=500, wrapper_config={"destroy_log": str(destroy_log)})
    with server.client() as client:
        session = client.session(expect=["out"])
        session.write({"in": b"x"})
        wait_for(lambda: destroyed(destroy_log) == [session.handle])
        _, _, _, output = client.call("AIOut", LoaderInput(), handle=session.handle)
        assert output.code == 10101
        fresh = client.session(expect=["out"])
        fresh.close()


def test_abort_releases_and_destroys(serve, destroy_log):
    server = serve("streamer", licences=1, wrapper_config={"destroy_log": str(destroy_log)})
    with server.client() as client:
        session = client.session(expect=["out"])
        _, _, _, output = client.call("AIExcp", LoaderInput(), handle=session.handle)
        assert output.code == 0
        wait_for(lambda: destroyed(destroy_log) == [session.handle])
        _, _, _, output = client.call("AIOut", LoaderInput(), handle=session.handle)
        assert output.code == 10101
        client.session(expect=["out"]).close()


def test_unknown_and_released_handles(serve):
    server = serve("streamer")
    with server.client() as client:
        _, _, _, output = client.call("AIOut", LoaderInput(), handle="0" * 26)
        assert output.code == 10008
        message = loader_input(state=LoaderInput.STREAM, inputs={"in": b"x"}, sync_id=1, status=1)
        _, _, _, output = client.call("AIIn", message, handle="0" * 26)
        assert output.code == 10008
        session = client.session(expect=["out"])
        session.write({"in": b"end"}, last=True)
        collect(session)
        _, _, _, output = client.call("AIOut", LoaderInput(), handle=session.handle)
        assert output.code == 10101
        _, _, _, output = client.call("AIExcp", LoaderInput(), handle=session.handle)
        assert output.code == 10101


def test_aiout_with_nothing_ready_waits_then_answers_empty(serve):
    server = serve("streamer")
    with server.client() as client:
        session = client.session(params={"mode": "collect"}, expect=["out"])
        started = time.monotonic()
        _, _, _, output = client.call("AIOut", LoaderInput(), handle=session.handle, params={"waitTime": "300"})
        assert time.monotonic() - started >= 0.25
        assert output.code == 0 and output.status == LoaderOutput.CONTINUE and not output.pl
        session.close()


def test_wrapper_create_and_write_errors_end_the_session(serve):
    server = serve("streamer")
    with server.client() as client:
        with pytest.raises(AigesCallError) as failure:
            client.session(params={"fail_create": "1"}, expect=["out"])
        assert failure.value.code == 10905 and "no capacity for a session;code=21" in failure.value.message
        session = client.session(expect=["out"])
        with pytest.raises(AigesCallError) as failure:
            session.write({"in": b"bad"})
        assert failure.value.code == 10907 and "bad chunk;code=22" in failure.value.message
        _, _, _, output = client.call("AIOut", LoaderInput(), handle=session.handle)
        assert output.code == 10101


def test_an_unexpected_output_key_is_10106_and_ends_the_session(serve):
    server = serve("streamer")
    with server.client() as client:
        session = client.session(expect=["other"])
        with pytest.raises(AigesCallError) as failure:
            session.write({"in": b"x"})
        assert failure.value.code == 10106


def test_cancelled_stream_destroys_its_session_and_frees_the_licence(serve, destroy_log):
    server = serve("streamer", licences=1, wrapper_config={"destroy_log": str(destroy_log)})
    with server.client() as client:
        session = client.session(expect=["out"], transport="stream")
        session.write({"in": b"x"})
        first = next(session.results())
        assert first.items[0].data == b"x"
        handle = session.handle
        session.cancel()
        wait_for(lambda: destroyed(destroy_log) == [handle])
        with client.session(expect=["out"], transport="stream") as again:
            again.write({"in": b"y"}, last=True)
            assert [i.data for i in collect(again)] == [b"y"]


def test_half_close_still_delivers_the_remaining_output(serve):
    server = serve("streamer")
    with server.client() as client:
        session = client.session(params={"mode": "collect"}, expect=["out"], transport="stream")
        session.write({"in": b"a"})
        session.write({"in": b"b"}, last=True)
        session.finish()
        [item] = collect(session)
    assert item.data == b"a|b"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_worker_crash_ends_only_its_own_sessions(serve, transport):
    server = serve("streamer", workers=2, licences=4)
    with server.client() as client:
        doomed = client.session(expect=["out"], transport=transport)
        # a stream opens asynchronously: wait until its session holds a worker, so the least-loaded
        # choice sends the survivor to the other one
        wait_for(lambda: status(server)["sessions"] == 1)
        survivor = client.session(expect=["out"], transport="xsf")
        doomed.write({"in": b"before"})
        survivor.write({"in": b"before"})
        with pytest.raises(AigesCallError) as failure:
            doomed.write({"in": b"crash"})
            collect(doomed)
        assert failure.value.code == 10109
        survivor.write({"in": b"after"}, last=True)
        assert [i.data for i in collect(survivor)] == [b"before", b"after"]
        wait_for(lambda: "worker ready" in server.log() and server.log().count("worker ready") == 3)
        with client.session(expect=["out"]) as fresh:
            fresh.write({"in": b"new"}, last=True)
            assert [i.data for i in collect(fresh)] == [b"new"]
        code, _, _, _ = open_raw(client)
        assert code == 0
