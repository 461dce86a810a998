"""The HTTP front: the ASE JSON API one-shot and over WebSocket, the OpenAPI document and docs
page, readiness while starting, and schemathesis against the document."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import pytest
from conftest import ROOT, free_port, wait_for
from openapi_spec_validator import validate

ECHO = ROOT / "demo" / "echo"


def http_server(serve, wrapper, **options):
    port = free_port()
    server = serve(wrapper, extra=f'[http]\nlisten = "127.0.0.1:{port}"\n', **options)
    server.http = f"http://127.0.0.1:{port}"
    return server


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(url: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def test_ase_one_shot_call(serve):
    server = http_server(serve, ECHO)
    status, reply = post(
        server.http + "/v1/private/echo",
        {
            "header": {"app_id": "a1", "uid": "u"},
            "parameter": {"echo": {"prefix": "> ", "text": {"encoding": "utf8"}}},
            "payload": {"text": {"text": b64("héllo".encode()), "encoding": "utf8", "status": 3}},
        },
    )
    assert status == 200
    assert reply["header"]["code"] == 0 and reply["header"]["sid"] and reply["header"]["status"] == 3
    assert reply["payload"]["text"]["text"] == "> héllo" and reply["payload"]["text"]["encoding"] == "utf8"


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"{not json", 400, 10009, "not JSON"),
        ({"payload": {"text": {"text": "***"}}}, 400, 10009, "payload.text.text is not base64"),
        (
            {"parameter": {"declared": {"lang": "en"}}, "payload": {"nope": {"text": b64(b"x")}}},
            400,
            10009,
            "input 'text' is missing",
        ),
        ({"payload": {"text": {"text": b64(b"x"), "status": 9}}}, 400, 10009, "status must be 0, 1, 2 or 3"),
        ({"parameter": {"declared": {"lang": "fr"}}, "payload": {"text": {"text": b64(b"x")}}}, 400, 10107, "'lang'"),
        (
            {"parameter": {"declared": {"lang": "en"}}, "payload": {"image": {"image": b64(b"i")}}},
            400,
            10009,
            "input 'text' is missing",
        ),
    ],
)
def test_ase_errors_have_a_code_and_an_http_status(serve, body, status, code, message):
    server = http_server(serve, "declared")
    got, reply = post(server.http + "/v2/private/declared", body)
    assert got == status and reply["header"]["code"] == code and message in reply["header"]["message"]
    assert reply["payload"] is None


def test_undeclared_inputs_are_passed_to_the_wrapper(serve):
    """As the xsf front and the original's HTTP front do: echo declares only "text"."""
    server = http_server(serve, ECHO)
    body = {
        "parameter": {"echo": {"extra": {"data_type": "text"}, "text": {}}},
        "payload": {"text": {"text": b64(b"a")}, "extra": {"text": b64(b"b"), "note": "kept"}},
    }
    status, reply = post(server.http + "/v1/private/echo", body)
    assert status == 200, reply
    assert reply["payload"]["text"]["text"] == "a" and reply["payload"]["extra"]["text"] == "b"
    url = server.http.replace("http", "ws") + "/v1/private/echo"
    frames = [
        {
            "header": {"status": 0},
            "parameter": {"echo": {"extra": {"data_type": "text"}}},
            "payload": {"extra": {"text": b64(b"one"), "status": 0}},
        },
        {"header": {"status": 2}, "payload": {"extra": {"text": b64(b"two"), "status": 2}}},
    ]
    replies, close_code = websocket_session(url, frames)
    assert all(r["header"]["code"] == 0 for r in replies), replies
    assert "".join(r["payload"]["extra"]["text"] for r in replies if r["payload"]) == "onetwo"


def test_wrapper_errors_are_500_and_the_server_keeps_serving(serve):
    server = http_server(serve, "faulty")
    route = server.http + "/v1/private/faulty"
    status, reply = post(route, {"parameter": {"faulty": {"mode": "error"}}, "payload": {"text": {"text": b64(b"x")}}})
    assert status == 500 and reply["header"]["code"] == 10909 and "seven is not allowed" in reply["header"]["message"]
    status, reply = post(route, {"payload": {"text": {"text": b64(b"fine")}}})
    assert status == 200 and reply["payload"]["text"]["text"] == "fine"


def test_unknown_route_and_method(serve):
    server = http_server(serve, ECHO)
    assert get(server.http + "/v1/private/other")[0] == 404
    assert get(server.http + "/v1/private/echo")[0] == 405


def websocket_session(url: str, frames: list, timeout: float = 10) -> tuple[list[dict], int | None]:
    return asyncio.run(asyncio.wait_for(exchange(url, frames), timeout))


async def exchange(url: str, frames: list) -> tuple[list[dict], int | None]:
    """Send the frames, collect every reply until the server closes the socket."""
    replies = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        for frame in frames:
            if isinstance(frame, bytes):
                await socket.send_bytes(frame)
            else:
                await socket.send_str(json.dumps(frame))
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                replies.append(json.loads(message.data))
        return replies, socket.close_code


def test_websocket_session_streams_every_chunk_back(serve):
    server = http_server(serve, ECHO)
    url = server.http.replace("http", "ws") + "/v1/private/echo"
    chunks = [b"one ", b"two ", b"three"]
    frames = [
        {
            "header": {"app_id": "a", "status": 0},
            "parameter": {"echo": {}},
            "payload": {"text": {"text": b64(chunks[0]), "status": 0}},
        }
    ]
    frames += [
        {"header": {"status": 1}, "payload": {"text": {"text": b64(chunks[1]), "status": 1}}},
        {"header": {"status": 2}, "payload": {"text": {"text": b64(chunks[2]), "status": 2}}},
    ]
    replies, close_code = websocket_session(url, frames)
    assert all(r["header"]["code"] == 0 for r in replies)
    assert "".join(r["payload"]["text"]["text"] for r in replies if r["payload"]) == "one two three"
    assert replies[-1]["header"]["status"] == 2 and close_code == 1000
    assert len({r["header"]["sid"] for r in replies}) == 1


@pytest.mark.parametrize(("frame", "message"), [(b"\x00binary", "text frames"), ({"payload": []}, "JSON object")])
def test_websocket_errors_are_sent_then_the_socket_closes(serve, frame, message):
    server = http_server(serve, ECHO)
    url = server.http.replace("http", "ws") + "/v1/private/echo"
    replies, _ = websocket_session(url, [frame])
    assert replies[-1]["header"]["code"] == 10009 and message in replies[-1]["header"]["message"]
    status, reply = post(server.http + "/v1/private/echo", {"payload": {"text": {"text": b64(b"still here")}}})
    assert status == 200 and reply["payload"]["text"]["text"] == "still here"


def test_websocket_session_is_destroyed_when_the_client_leaves(serve):
    server = http_server(serve, ECHO)
    url = server.http.replace("http", "ws") + "/v1/private/echo"

    async def leave_early() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            await socket.send_str(json.dumps({"payload": {"text": {"text": b64(b"x"), "status": 0}}}))
            reply = json.loads((await socket.receive(timeout=10)).data)
            assert reply["payload"]["text"]["text"] == "x"

    asyncio.run(leave_early())
    wait_for(lambda: '"session closed"' in server.log() and "client gone" in server.log())


def test_openapi_document_and_docs_page(serve):
    server = http_server(serve, "declared")
    status, body, headers = get(server.http + "/openapi.json")
    document = json.loads(body)
    validate(document)
    assert {"/v2/private/declared", "/v2/models/{name}/infer", "/v2/health/ready"} <= set(document["paths"])
    assert "Access-Control-Allow-Origin" not in headers  # CORS is off unless [http] cors names origins
    status, body, headers = get(server.http + "/docs")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # Swagger UI, vendored: its scripts from this server only (the browser test renders it)
    assert "swagger-ui-bundle.js" in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = get(server.http + "/")
    assert status == 200 and b'id="console"' in body  # the web console


def test_readiness_while_starting(serve):
    port = free_port()
    server = serve(
        "faulty", wait=False, extra=f'[http]\nlisten = "127.0.0.1:{port}"\n', wrapper_config={"init_delay": "3"}
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(base + "/v2/health/live")[0] == 200 if _listening(port) else False)
    assert get(base + "/v2/health/ready")[0] == 503
    status, reply = post(base + "/v1/private/faulty", {"payload": {"text": {"text": b64(b"x")}}})
    assert status == 503 and reply["header"]["code"] == 10112 and "loading" in reply["header"]["message"]
    server.wait_serving()
    assert get(base + "/v2/health/ready")[0] == 200


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_http_listen_that_cannot_be_bound_stops_the_server(serve):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(ECHO, wait=False, extra=f'[http]\nlisten = "127.0.0.1:{port}"\n')
        assert server.wait(30) == 2
    assert "cannot serve http" in server.log()


def test_schemathesis_finds_no_server_errors(serve, tmp_path):
    """Generated requests for every documented operation: none may get a 5xx from a wrapper that
    cannot fail (joiner; demo/echo answers an undeclared input under its own, undeclared name,
    which is a 10106, the wrapper's fault)."""
    pytest.importorskip("schemathesis")
    server = http_server(serve, "joiner")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            server.http + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--url",
            server.http,
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("route", ["/v1/private/echo", "/v2/models/echo/infer"])
def test_absurdly_nested_json_is_a_400(serve, route):
    server = http_server(serve, ECHO)
    status, reply = post(server.http + route, b"[" * 50000)
    assert status == 400
    assert "nested too deeply" in json.dumps(reply)
    rest = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [[[[["deep"]]]]]}]}
    assert post(server.http + "/v2/models/echo/infer", rest)[0] == 200


def preflight(server, origin: str):
    request = urllib.request.Request(
        server.http + "/v2/models/echo/infer",
        method="OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, reply.headers


def test_cors_is_off_unless_origins_are_named(serve):
    plain = http_server(serve, ECHO)
    status, reply = post(plain.http + "/v1/private/echo", {"payload": {"text": {"text": b64(b"x")}}})
    assert status == 200
    with pytest.raises(urllib.error.HTTPError):
        preflight(plain, "https://example.com")  # no CORS: a preflight is a request like any other
    port = free_port()
    named = serve(ECHO, extra=f'[http]\nlisten = "127.0.0.1:{port}"\ncors = ["https://console.example"]\n')
    named.http = f"http://127.0.0.1:{port}"
    status, headers = preflight(named, "https://console.example")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://console.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "content-type" in headers["Access-Control-Allow-Headers"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        preflight(named, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in refused.value.headers


def test_cors_any_origin_when_named(serve):
    port = free_port()
    server = serve(ECHO, extra=f'[http]\nlisten = "127.0.0.1:{port}"\ncors = "*"\n')
    server.http = f"http://127.0.0.1:{port}"
    status, headers = preflight(server, "https://example.com")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"


def test_open_websockets_are_closed_going_away_when_the_server_stops(serve):
    """An idle WebSocket does not hold the process past its drain."""
    import signal
    import time

    server = http_server(serve, ECHO, drain_timeout_ms=500)
    url = server.http.replace("http", "ws") + "/v1/private/echo"

    async def idle_until_closed() -> int | None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            server.signal(signal.SIGTERM)
            message = await socket.receive(timeout=20)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return socket.close_code

    started = time.monotonic()
    assert asyncio.run(idle_until_closed()) == 1001
    assert server.wait(20) == 0
    assert time.monotonic() - started < 15
