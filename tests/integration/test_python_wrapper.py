"""The ``python_wrapper`` style (PyPI ``aiges-wrapper``): the package's own echo example served
unchanged, and a wrapper using every framework callback, over xsf, HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from conftest import WRAPPERS, free_port, wait_for
from test_operations import status

from aiges.client import AigesCallError

python_wrapper = pytest.importorskip("python_wrapper", reason="aiges-wrapper is not installed")

ECHO_EXAMPLE = Path(python_wrapper.__file__).parent / "examples" / "echo_wrapper.py"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serve_with_http(serve, wrapper, **options):
    http_port, metrics_port = free_port(), free_port()
    server = serve(wrapper, extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n', metrics_port=metrics_port, **options)
    server.http = f"127.0.0.1:{http_port}"
    server.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    return server


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def websocket(url: str, frames: list[dict]) -> list[dict]:
    async def exchange() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            for frame in frames:
                await socket.send_str(json.dumps(frame))
            return [json.loads(m.data) async for m in socket if m.type == aiohttp.WSMsgType.TEXT]

    return asyncio.run(asyncio.wait_for(exchange(), 20))


def metrics(server) -> list[str]:
    with urllib.request.urlopen(server.metrics, timeout=5) as reply:
        return reply.read().decode().splitlines()


def nothing_held(server) -> None:
    wait_for(lambda: status(server)["licences_used"] == 0 and status(server)["sessions"] == 0)


@pytest.fixture
def echo(serve, tmp_path):
    """The package's echo example, copied unchanged as the service's wrapper.py."""
    folder = tmp_path / "echo"
    folder.mkdir()
    shutil.copyfile(ECHO_EXAMPLE, folder / "wrapper.py")
    assert (folder / "wrapper.py").read_bytes() == ECHO_EXAMPLE.read_bytes()
    return serve_with_http(serve, folder)


def test_the_echo_example_is_detected_and_answers_over_xsf(echo):
    with echo.client() as client:
        result = client.once({"text": b"hello"}, expect=["text"])
        [item] = result.items
        assert item.data == b"hello" and item.attributes["echo"] == "true"
        sid = "pw-session-0001"
        with client.session(headers={"sid": sid}, expect=["text"], handle=sid) as session:
            assert session.handle == sid
            session.write({"text": b"chunk"}, last=True)
            assert [i.data for batch in session.results() for i in batch.items] == [b"chunk"]
    state = status(echo)
    assert state["health"] == "SERVING"
    nothing_held(echo)
    ready = [json.loads(line) for line in echo.log().splitlines() if '"worker ready"' in line]
    assert [r["style"] for r in ready] == ["python_wrapper"]


def route(server) -> str:
    """The ASE JSON API route: /<version>/private/<serviceId>, from what the wrapper says."""
    state = status(server)
    return f"/{state['version']}/private/{state['service']}"


def test_the_echo_example_answers_over_http_and_websocket(echo):
    assert route(echo) == "/1.0.0/private/echo"  # version() and the service folder's name
    code, reply = post(
        f"http://{echo.http}{route(echo)}",
        {
            "header": {"app_id": "a"},
            "parameter": {"echo": {"text": {"data_type": "text"}}},
            "payload": {"text": {"text": b64(b"over http")}},
        },
    )
    assert code == 200 and reply["payload"]["text"]["text"] == "over http", reply
    replies = websocket(
        f"ws://{echo.http}{route(echo)}",
        [
            {
                "header": {"status": 0},
                "parameter": {"echo": {"text": {"data_type": "text"}}},
                "payload": {"text": {"text": b64(b"over ws"), "status": 0}},
            }
        ],
    )
    assert [r["header"]["code"] for r in replies] == [0] and replies[0]["payload"]["text"]["text"] == "over ws"
    nothing_held(echo)


@pytest.fixture
def reporter(serve):
    return serve_with_http(serve, WRAPPERS / "reporter", wrapper_config={"model": "m7"})


def test_callbacks_reach_metrics_the_registry_value_and_the_log(reporter):
    with reporter.client() as client:
        for app in ("app-1", "app-1", "app-2"):
            assert client.once({"text": b"abcd"}, headers={"app_id": app}, expect=["out"])["out"] == b"ABCD"
        with pytest.raises(AigesCallError) as failure:
            client.once({"text": b"x"}, params={"fail": "1"}, expect=["out"])
        assert failure.value.code == 10909 and "asked to fail" in failure.value.message
    lines = metrics(reporter)
    assert 'aiges_usage_total{app_id="app-1",channel="",key="chars"} 8.0' in lines
    assert 'aiges_usage_total{app_id="app-2",channel="",key="chars"} 4.0' in lines
    assert 'aiges_usage_total{app_id="billing-app",channel="web",key="calls"} 4.0' in lines
    assert 'aiges_wrapper_metric_count{labels="model=m1",name="input_bytes"} 4.0' in lines
    assert 'aiges_wrapper_metric_sum{labels="model=m1",name="input_bytes"} 13.0' in lines
    assert status(reporter)["labels"] == {"model": "m7"}
    wait_for(lambda: reporter.log().count('"wrapper trace"') >= 8)
    traces = [json.loads(line) for line in reporter.log().splitlines() if '"wrapper trace"' in line]
    assert {(t["kind"], t["key"], t["value"]) for t in traces} == {("trace", "stage", "exec"), ("event", "model", "m1")}
    assert all(t["sid"] for t in traces)


def test_async_callback_is_session_output_and_its_errors_end_the_session(reporter):
    with reporter.client() as client:
        for transport in ("xsf", "stream"):
            with client.session(expect=["out"], transport=transport) as session:
                for i in range(5):
                    session.write({"text": f"c{i}".encode()}, last=i == 4)
                assert [i.data for batch in session.results() for i in batch.items] == [
                    b"C0",
                    b"C1",
                    b"C2",
                    b"C3",
                    b"C4",
                ]
        session = client.session(expect=["out"])
        with pytest.raises(AigesCallError) as failure:
            session.write({"text": b"boom"})  # the error may already be there when the write returns
            list(session.results())
        assert failure.value.code == 10910 and "the chunk exploded" in failure.value.message
    replies = websocket(
        f"ws://{reporter.http}{route(reporter)}",
        [
            {
                "header": {"status": 0},
                "parameter": {"x": {"out": {"data_type": "text"}}},
                "payload": {"text": {"text": b64(b"ws"), "status": 2}},
            }
        ],
    )
    assert [r["payload"]["out"]["text"] for r in replies if r["payload"]] == ["WS"]
    nothing_held(reporter)
