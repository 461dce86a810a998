"""An error raised while a session's first frame is handled reaches the client on that first
frame, on every front; the wrapper session is destroyed and the licence freed at once.

The streamer echoes its input as output "out"; a request whose expect list does not name "out"
makes that output fail with 10106 (INVALID_OUTPUT) while the first frame is being handled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import free_port, wait_for

from aiges.client import AigesCallError

INVALID_OUTPUT = 10106


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def streamer(serve, tmp_path):
    """The streamer with an HTTP front, noting every wrapper session it creates and destroys."""
    http_port = free_port()
    logs = {"create_log": str(tmp_path / "created.txt"), "destroy_log": str(tmp_path / "destroyed.txt")}
    server = serve(
        "streamer", licences=4, ttl=3_600_000, wrapper_config=logs, extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
    )
    server.http = f"127.0.0.1:{http_port}"
    server.created = lambda: lines(tmp_path / "created.txt")
    server.destroyed = lambda: lines(tmp_path / "destroyed.txt")
    return server


def assert_nothing_left(server) -> None:
    """Every wrapper session created was destroyed, and no licence is held."""
    from test_operations import status

    wait_for(lambda: server.created() and sorted(server.created()) == sorted(server.destroyed()))
    wait_for(lambda: status(server)["licences_used"] == 0 and status(server)["sessions"] == 0)


@pytest.mark.parametrize("transport", ["xsf", "stream"])
def test_grpc_fronts_answer_the_first_frame_with_the_error(streamer, transport):
    with streamer.client() as client:
        with pytest.raises(AigesCallError) as failure:
            session = client.session({"in": b"x"}, expect=["other"], transport=transport)
            list(session.results())  # the native stream delivers the error as its first message
        assert failure.value.code == INVALID_OUTPUT and "'out'" in failure.value.message
        assert_nothing_left(streamer)
        with client.session({"in": b"fine"}, expect=["out"], transport=transport) as session:
            session.write({"in": b"end"}, last=True)
            assert [item.data for batch in session.results() for item in batch.items] == [b"fine", b"end"]


def test_oip_stream_answers_the_first_request_with_the_error(streamer):
    grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
    client = grpcclient.InferenceServerClient(streamer.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    tensor = grpcclient.InferInput("in", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"x"], dtype=object))
    client.async_stream_infer(
        "streamer",
        [tensor],
        request_id="first",
        sequence_id=7,
        sequence_start=True,
        outputs=[grpcclient.InferRequestedOutput("other")],
    )
    _, error = results.get(timeout=20)
    client.stop_stream()
    assert error is not None and str(INVALID_OUTPUT) in str(error) and "'out'" in str(error)
    assert_nothing_left(streamer)


def test_websocket_answers_the_first_frame_with_the_error(streamer):
    url = f"ws://{streamer.http}/v1/private/streamer"
    frame = {"header": {"status": 0}, "payload": {"in": {"text": base64.b64encode(b"x").decode(), "status": 0}}}

    async def exchange() -> tuple[list[dict], int | None]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            await socket.send_str(json.dumps(frame))
            replies = [json.loads(m.data) async for m in socket if m.type == aiohttp.WSMsgType.TEXT]
            return replies, socket.close_code

    replies, close_code = asyncio.run(asyncio.wait_for(exchange(), 20))
    assert [r["header"]["code"] for r in replies] == [INVALID_OUTPUT] and close_code == 1000
    assert "'out'" in replies[0]["header"]["message"]
    assert_nothing_left(streamer)
