"""Input no client should send gets a clear 400 (or an error frame) naming the field, never a
5xx: text that is not Unicode, NaN and Infinity, WebSocket frames that are not masked."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.request

import aiohttp
import pytest
from conftest import ROOT, free_port
from test_backpressure import masked_text_frame

ECHO = ROOT / "demo" / "echo"
LONE = "\ud800"


def http_server(serve, wrapper, **options):
    port = free_port()
    server = serve(wrapper, extra=f'[http]\nlisten = "127.0.0.1:{port}"\n', **options)
    server.http = f"127.0.0.1:{port}"
    return server


def post(url: str, body: str | bytes, headers: dict | None = None) -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def echo(serve):
    return http_server(serve, ECHO)


# json.dumps writes a lone surrogate as the escape \ud800: valid JSON text, not valid Unicode
ASE_CASES = [
    ({"header": {LONE: "x"}, "payload": {"text": {"text": b64(b"x")}}}, "a key in header"),
    ({"header": {"app_id": LONE}, "payload": {"text": {"text": b64(b"x")}}}, "header.app_id"),
    (
        {"parameter": {"echo": {"prefix": "a" + LONE}}, "payload": {"text": {"text": b64(b"x")}}},
        "parameter.echo.prefix",
    ),
    ({"payload": {"text": {"text": b64(b"x"), "encoding": LONE}}}, "payload.text.encoding"),
]


@pytest.mark.parametrize(("body", "field"), ASE_CASES)
def test_text_that_is_not_unicode_is_a_400_naming_the_field(echo, body, field):
    status, reply = post(f"http://{echo.http}/v1/private/echo", json.dumps(body))
    assert status == 400 and reply["header"]["code"] == 10009, reply
    assert field in reply["header"]["message"] and "Unicode" in reply["header"]["message"]


def test_over_websocket_it_is_an_error_frame(echo):
    async def exchange() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://{echo.http}/v1/private/echo") as ws:
            await ws.send_str(json.dumps({"header": {"uid": LONE}, "payload": {"text": {"text": b64(b"x")}}}))
            return [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]

    [reply] = asyncio.run(asyncio.wait_for(exchange(), 20))
    assert reply["header"]["code"] == 10009 and "header.uid" in reply["header"]["message"]


def oip_body(value: str, parameters: str = "{}") -> str:
    return (
        f'{{"parameters": {parameters}, "inputs": [{{"name": "x", "datatype": "FP32", "shape": [2], '
        f'"data": [1.0, {value}]}}]}}'
    )


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_oip_rest_refuses_nan_and_infinity(serve, value):
    server = http_server(serve, "tensors")
    status, reply = post(f"http://{server.http}/v2/models/tensors/infer", oip_body(value))
    assert status == 400 and "10009" in reply["error"] and value.lstrip("-") in reply["error"], reply


def test_oip_rest_refuses_parameters_that_are_not_unicode(serve):
    server = http_server(serve, "tensors")
    status, reply = post(f"http://{server.http}/v2/models/tensors/infer", oip_body("2.0", '{"tag": "\\ud800"}'))
    assert status == 400 and "parameters.tag" in reply["error"], reply


def test_an_infinite_output_in_json_is_a_clear_error_and_binary_carries_it(serve):
    server = http_server(serve, "tensors")
    infinite = struct.pack("<f", float("inf"))
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}
    ).encode()
    status, reply = post(
        f"http://{server.http}/v2/models/tensors/infer",
        header + infinite,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 500 and "NaN or Infinity" in reply["error"] and "binary" in reply["error"], reply
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/tensors/infer",
        data=header + infinite,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        raw = reply.read()
        split = int(reply.headers["Inference-Header-Content-Length"])
    assert struct.unpack("<f", raw[split : split + 4])[0] == float("inf")


def test_an_unmasked_websocket_frame_closes_the_socket_with_1002(echo):
    host, port = echo.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /v1/private/echo HTTP/1.1\r\nHost: {echo.http}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        text = json.dumps({"payload": {"text": {"text": b64(b"x")}}}).encode()
        sock.sendall(bytes([0x81, len(text)]) + text)  # FIN + text, no mask bit
        frames = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            frames += chunk
    assert frames[0] == 0x88 and struct.unpack("!H", frames[2:4])[0] == 1002, frames
    status, reply = post(f"http://{echo.http}/v1/private/echo", json.dumps({"payload": {"text": {"text": b64(b"ok")}}}))
    assert status == 200


def test_masked_frames_still_work_frame_by_frame(echo):
    """The mask check follows frame boundaries across reads: many small frames, one byte at a time."""
    host, port = echo.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /v1/private/echo HTTP/1.1\r\nHost: {echo.http}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        frame = masked_text_frame(json.dumps({"payload": {"text": {"text": b64(b"y" * 300), "status": 2}}}))
        for byte in frame:
            sock.send(bytes([byte]))
        reply = sock.recv(65536)
    assert reply[0] == 0x81 and b'"code": 0' in reply
