"""Wrappers written for the original AIGes Python SDK, taken from the real ``aiges`` 0.16.0 on
PyPI and served unchanged with ``aiges serve``: the template ``aiges create`` renders, its
``wrapper_test.py``, and its ``examples/once/mmocr``, ``examples/stream/mock`` and
``examples/stream/mmocr`` wrappers (heavy model imports replaced by stand-in modules next to the
wrapper, on the worker's path). Each is called with this project's client, with an xsf client
made only of stubs compiled from the original's protos, over HTTP with the original package's
own client (``aipass_client``), and over WebSocket. After every test no licence and no session
is held.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import grpc
import pytest
from conftest import Server, free_port, wait_for
from original_sdk import CLIENTS, compile_original_stubs, original_file, original_root, render_template

from aiges.client import AigesCallError, Client
from aiges.client.values import Input
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

IMAGE = 2
LOGO = Path("/home/mmocr/resources/mmocr-logo.png")  # read by the original's stream examples
ROUTE = "/backup.0/private/mmocr"  # every original example is serviceId "mmocr", version "backup.0"
P2 = {"p2": "x"}  # the template, wrapper_test.py and examples/once/mmocr declare p2 required


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def state(server: Server) -> dict:
    with grpc.insecure_channel(server.address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
    return json.loads(reply.body)


def assert_released(server: Server) -> None:
    """No licence held and no session open (a session may take a moment to be destroyed)."""

    def idle() -> bool:
        now = state(server)
        return now["licences_used"] == 0 and now["sessions"] == 0 and now["inflight"] == 0

    try:
        wait_for(idle, timeout=30)
    except AssertionError:
        raise AssertionError(f"still held: {state(server)}") from None


class HttpServer(Server):
    """A Server with an [http] front, at ``http`` (its base URL)."""

    http = ""


@contextmanager
def serving(workdir: Path, wrapper: Path, **options) -> Iterator[HttpServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    http_port = free_port()
    server = HttpServer(workdir, wrapper, extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n', **options)
    server.http = f"http://127.0.0.1:{http_port}"
    try:
        server.start()
        yield server
    finally:
        server.stop()


def new_handle() -> str:
    """A handle of the xsf shape (26 characters), chosen by the client."""
    return "0" + uuid.uuid4().hex[:25]


@pytest.fixture(scope="module")
def png() -> bytes:
    return original_file("test_data/test.png").read_bytes()


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    return compile_original_stubs(tmp_path_factory.mktemp("original-stubs"))


def original_xsf(stubs: Path, request: dict) -> list[dict]:
    """Run the original-stubs xsf client; its replies."""
    done = subprocess.run(
        [sys.executable, str(CLIENTS / "xsf_client.py"), str(stubs)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["replies"]


def original_http(workdir: Path, url: str, request_data: dict, media: dict[str, bytes]) -> tuple[int, dict]:
    """POST with the original package's aipass_client (payload media given as file names)."""
    folder = workdir / f"aipass-{uuid.uuid4().hex[:8]}"
    (folder / "resource" / "output").mkdir(parents=True)
    for name, data in media.items():
        (folder / name).write_bytes(data)
    done = subprocess.run(
        [sys.executable, str(CLIENTS / "aipass_call.py"), str(original_root()), url],
        input=json.dumps(request_data),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    return reply["status"], reply["body"]


def websocket(url: str, frames: list[dict], timeout: float = 30) -> list[dict]:
    async def exchange() -> list[dict]:
        replies = []
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            for frame in frames:
                await socket.send_str(json.dumps(frame))
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    replies.append(json.loads(message.data))
        return replies

    return asyncio.run(asyncio.wait_for(exchange(), timeout))


# -- the template that `aiges create` renders -----------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Iterator[HttpServer]:
    workdir = tmp_path_factory.mktemp("template")
    with serving(workdir, render_template(workdir / "project")) as server:
        yield server


def test_template_serves_a_call_carrying_only_data(template, png):
    """The template declares inputs data, data2 and switch; body fields are optional, as in the
    original, so a call with only "data" is served. Its one required param (p2) is checked."""
    with template.client() as client:
        result = client.once({"data": Input(png, IMAGE)}, params={"p2": "x"}, expect={"result": "image"})
        [item] = result.items
        assert (item.name, item.type, item.data, item.status) == ("result", IMAGE, png, 3)
        everything = client.once(
            {"data": Input(png, IMAGE), "data2": Input(png, IMAGE), "switch": b"ctrl"},
            params={"p1": "eee", "p2": "x", "p3": "y"},
            expect={"result": "image"},
        )
        assert everything["result"] == png
    assert_released(template)


@pytest.mark.parametrize(
    ("params", "inputs", "code", "fragment"),
    [
        ({}, {"data": b"x"}, 10107, "parameter 'p2' is required"),
        ({"p2": "x", "p1": "nope"}, {"data": b"x"}, 10107, "parameter 'p1' must be one of ['3', 'eee']"),
        ({"p2": "x" * 45}, {"data": b"x"}, 10107, "parameter 'p2' must be 0 to 44 characters long"),
        ({"p2": "x"}, {}, 10009, "carries no payloads"),
    ],
)
def test_template_bad_input_keeps_its_code(template, params, inputs, code, fragment):
    with template.client() as client:
        result = client.once(inputs, params=params, expect={"result": "image"}, check=False)
    assert result.code == code and fragment in result.message
    assert_released(template)


def test_template_has_no_sessions(template, png):
    """A one-shot wrapper: the base wrapperCreate answers no session (the original's returned
    None, which its loaders took as a failed create) -> 10905."""
    with (
        template.client() as client,
        pytest.raises(AigesCallError) as failure,
        client.session({"data": Input(png, IMAGE)}, params=P2, expect={"result": "image"}) as session,
    ):
        list(session.results())
    assert failure.value.code == 10905 and "one-shot calls only" in failure.value.message
    replies = websocket(
        template.http.replace("http", "ws") + ROUTE,
        [
            {
                "header": {"app_id": "a", "status": 0},
                "parameter": {"mmocr": {"p2": "x"}},
                "payload": {"data": {"image": b64(png), "status": 0}},
            }
        ],
    )
    assert replies[-1]["header"]["code"] == 10905
    assert_released(template)


def test_template_over_the_original_xsf_stubs(template, stubs, png):
    [reply] = original_xsf(
        stubs,
        {
            "address": template.address,
            "mode": "once",
            "params": {"p2": "x"},
            "headers": {"sid": new_handle()},
            "expect": ["result"],
            "inputs": [{"name": "data", "type": IMAGE, "data": b64(png)}],
        },
    )
    output = reply["output"]
    assert reply["code"] == 0 and output["code"] == 0 and output["status"] == 3, reply
    [item] = output["pl"]
    assert item["name"] == "result" and base64.b64decode(item["data"]) == png
    assert_released(template)


def test_template_over_http_with_the_original_client(template, png, tmp_path):
    """aipass_client signs the URL (host, date, authorization); the call is served."""
    request_data = {
        "header": {"app_id": "app-1", "status": 3},
        "parameter": {"mmocr": {"p2": "x"}},
        "payload": {"data": {"encoding": "png", "image": "test.png", "status": 3}},
    }
    status, body = original_http(tmp_path, template.http + ROUTE, request_data, {"test.png": png})
    assert status == 200 and body["header"]["code"] == 0, body
    assert base64.b64decode(body["payload"]["result"]["image"]) == png
    del request_data["parameter"]
    status, body = original_http(tmp_path, template.http + ROUTE, request_data, {"test.png": png})
    assert status == 400 and body["header"]["code"] == 10107 and "'p2'" in body["header"]["message"]
    assert_released(template)


# -- the original's wrapper_test.py ---------------------------------------------------------------


@pytest.fixture(scope="module")
def wrapper_test(tmp_path_factory) -> Iterator[HttpServer]:
    workdir = tmp_path_factory.mktemp("wrapper_test")
    folder = workdir / "service"
    (folder / "test_data").mkdir(parents=True)
    shutil.copy(original_file("wrapper_test.py"), folder / "wrapper_test.py")
    shutil.copy(original_file("test_data/test.png"), folder / "test_data" / "test.png")
    with serving(workdir, folder / "wrapper_test.py") as server:
        yield server


def test_wrapper_test_one_shot(wrapper_test, png, stubs, tmp_path):
    """It answers three items "ccc", which it does not declare (it declares boxes, boxes2): served
    to a request that expects "ccc", 10106 to one that does not, as the original loader did."""
    with wrapper_test.client() as client:
        result = client.once({"data": Input(png, IMAGE)}, params=P2, expect=["ccc"])
        assert [(i.name, i.data) for i in result.items] == [("ccc", b"cc")] * 3
        refused = client.once({"data": Input(png, IMAGE)}, params=P2, expect=["boxes"], check=False)
        assert refused.code == 10106 and "'ccc'" in refused.message
    [reply] = original_xsf(
        stubs,
        {
            "address": wrapper_test.address,
            "mode": "once",
            "expect": ["ccc"],
            "params": P2,
            "inputs": [{"name": "data", "type": IMAGE, "data": b64(png)}],
        },
    )
    assert reply["output"]["code"] == 0 and len(reply["output"]["pl"]) == 3
    request_data = {
        "header": {"app_id": "app-1"},
        "parameter": {"mmocr": {**P2, "ccc": {"data_type": "text"}}},
        "payload": {"data": {"encoding": "png", "image": "test.png", "status": 3}},
    }
    status, body = original_http(tmp_path, wrapper_test.http + ROUTE, request_data, {"test.png": png})
    assert status == 200 and body["payload"]["ccc"]["text"] == "cc", body
    assert_released(wrapper_test)


def test_wrapper_test_sessions_fail_to_create(wrapper_test, png, stubs):
    """Its wrapperCreate asks self.session for a handle without ever having called
    init_handle_pool. The original raised there (AttributeError: no handle_pool; its loaders
    did not even get that far: both called wrapperCreate with arguments this one does not
    take), so the create failed: here 10905, saying what is missing."""
    with (
        wrapper_test.client() as client,
        pytest.raises(AigesCallError) as failure,
        client.session(params=P2, expect=["ccc"]) as session,
    ):
        session.write({"data": Input(png, IMAGE)}, last=True)
    assert failure.value.code == 10905 and "init_handle_pool" in failure.value.message
    handle = new_handle()
    replies = original_xsf(
        stubs,
        {
            "address": wrapper_test.address,
            "mode": "session",
            "handle": handle,
            "params": P2,
            "expect": ["ccc"],
            "chunks": [[{"name": "data", "data": b64(b"x")}]],
        },
    )
    assert replies[0]["handle"] == handle and replies[0]["output"]["code"] == 10905
    replies = websocket(
        wrapper_test.http.replace("http", "ws") + ROUTE,
        [{"header": {"status": 0}, "parameter": {"mmocr": P2}, "payload": {"data": {"image": b64(png), "status": 0}}}],
    )
    assert replies[-1]["header"]["code"] == 10905 and "init_handle_pool" in replies[-1]["header"]["message"]
    assert_released(wrapper_test)


# -- examples/once/mmocr ----------------------------------------------------------------------------


def test_once_mmocr_example(tmp_path, png):
    """Declares StringBodyField(value="cc"), a str, which the original SDK refused at import
    (it wanted bytes); taken here as its UTF-8."""
    folder = tmp_path / "service"
    (folder / "test_data").mkdir(parents=True)
    shutil.copy(original_file("examples/once/mmocr/wrapper.py"), folder / "wrapper.py")
    shutil.copy(original_file("test_data/test.png"), folder / "test_data" / "test.png")
    with serving(tmp_path, folder) as server, server.client() as client:
        result = client.once({"data": Input(png, IMAGE)}, params=P2, expect=["ccc"])
        assert [i.data for i in result.items] == [png] * 3
        with pytest.raises(AigesCallError) as failure, client.session(params=P2, expect=["ccc"]) as session:
            session.write({"data": b"x"}, last=True)
        assert failure.value.code == 10905
        assert_released(server)


# -- examples/stream/mock and examples/stream/mmocr (asyncMode: results only through the callback) --


@pytest.fixture(scope="module")
def logo(png) -> Iterator[bytes]:
    """The absolute file the stream examples read for every result; made if it is not there."""
    if LOGO.exists():
        yield LOGO.read_bytes()
        return
    created = [p for p in reversed(LOGO.parents) if not p.exists()]
    try:
        LOGO.parent.mkdir(parents=True, exist_ok=True)
        LOGO.write_bytes(png)
    except OSError as exc:
        pytest.skip(f"the original's stream examples read {LOGO}, which this test cannot create: {exc}")
    try:
        yield png
    finally:
        LOGO.unlink(missing_ok=True)
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)


def stream_service(folder: Path, example: str) -> Path:
    (folder / "demo").mkdir(parents=True)
    shutil.copy(original_file(f"examples/stream/{example}/wrapper.py"), folder / "wrapper.py")
    shutil.copy(original_file("test_data/test.png"), folder / "demo" / "demo_text_det.jpg")
    return folder


@pytest.fixture(scope="module")
def mock(tmp_path_factory, logo) -> Iterator[HttpServer]:
    workdir = tmp_path_factory.mktemp("stream_mock")
    with serving(workdir, stream_service(workdir / "service", "mock"), async_mode=True) as server:
        yield server


def chunks_over_xsf(client: Client, chunks: list[bytes], sid: str) -> list:
    with client.session(headers={"sid": sid}, expect={"boxes": "text"}) as session:
        for index, chunk in enumerate(chunks):
            session.write({"data": Input(chunk, IMAGE)}, last=index == len(chunks) - 1)
        return [item for batch in session.results() for item in batch.items]


def test_stream_mock_session_over_xsf(mock, logo):
    """Each chunk comes back as the logo, with the chunk's status; the sid the wrapper's thread
    calls back with is the request's, not the handle."""
    with mock.client() as client:
        items = chunks_over_xsf(client, [b"one", b"two", b"three"], sid="sid-not-the-handle")
    assert [i.data for i in items] == [logo] * 3
    assert [i.status for i in items] == [1, 1, 2] and [i.attributes["seq"] for i in items] == ["1", "2", "3"]
    assert_released(mock)


def test_stream_mock_session_with_the_original_stubs(mock, stubs, logo):
    """A session opened as an xsf client does: the handle (s.h) is the request's sid."""
    handle = new_handle()
    chunks = [[{"name": "data", "type": IMAGE, "data": b64(chunk)}] for chunk in (b"a", b"b")]
    replies = original_xsf(
        stubs, {"address": mock.address, "mode": "session", "handle": handle, "expect": ["boxes"], "chunks": chunks}
    )
    assert all(r["handle"] == handle for r in replies)
    outputs = [r["output"] for r in replies if r["op"] in ("AIIn", "AIOut")]
    assert all(o["code"] == 0 for o in outputs), outputs
    payloads = [p for o in outputs for p in o["pl"]]
    assert [base64.b64decode(p["data"]) for p in payloads] == [logo, logo]
    assert outputs[-1]["status"] == 2
    assert_released(mock)


def test_stream_mock_handles_return_to_the_wrappers_pool(mock, logo):
    """The wrapper has 10 handles, each freed by its thread after the last chunk: 12 sessions in
    a row all work; 10 at once take them all, and an 11th is refused with the wrapper's code."""
    with mock.client() as client:
        for index in range(12):
            assert len(chunks_over_xsf(client, [b"x"], sid=f"row-{index}")) == 1
        sessions = [client.session(headers={"sid": f"held-{i}"}, expect={"boxes": "text"}) for i in range(10)]
        with pytest.raises(AigesCallError) as refused:
            client.session(headers={"sid": "one-too-many"}, expect={"boxes": "text"})
        assert refused.value.code == 10905 and "other error code;code=-1" in refused.value.message
        with ThreadPoolExecutor(4) as pool:

            def finish(session):
                session.write({"data": Input(b"end", IMAGE)}, last=True)
                return [i.status for batch in session.results() for i in batch.items]

            assert list(pool.map(finish, sessions)) == [[2]] * 10
        assert len(chunks_over_xsf(client, [b"again"], sid="after")) == 1
    assert_released(mock)


def test_stream_mock_over_websocket(mock, logo):
    frames = [
        {
            "header": {"app_id": "a", "status": 0},
            "parameter": {"mmocr": {}},
            "payload": {"data": {"image": b64(b"first"), "status": 0}},
        },
        {"header": {"status": 1}, "payload": {"data": {"image": b64(b"more"), "status": 1}}},
        {"header": {"status": 2}, "payload": {"data": {"image": b64(b"last"), "status": 2}}},
    ]
    replies = websocket(mock.http.replace("http", "ws") + ROUTE, frames)
    assert all(r["header"]["code"] == 0 for r in replies), replies
    with_data = [r for r in replies if r["payload"]]
    assert [
        base64.b64decode(r["payload"]["boxes"]["text"])
        if r["payload"]["boxes"].get("base64")
        else r["payload"]["boxes"]["text"].encode()
        for r in with_data
    ] == [logo] * 3
    assert replies[-1]["header"]["status"] == 2
    assert_released(mock)


def test_stream_mock_one_shot_is_a_clear_error(mock, tmp_path):
    """Its wrapperOnceExec returns None: 10909 on every front (the original's loader waited for a
    result that never came)."""
    with mock.client() as client:
        result = client.once({"data": Input(b"x", IMAGE)}, expect=["boxes"], check=False)
    assert result.code == 10909 and "returned None" in result.message
    status, body = original_http(
        tmp_path,
        mock.http + ROUTE,
        {"header": {"app_id": "app-1"}, "payload": {"data": {"image": "x.jpg", "status": 3}}},
        {"x.jpg": b"x"},
    )
    assert status == 500 and body["header"]["code"] == 10909
    assert_released(mock)


STAND_IN = '''"""Stand-in for mmocr (not installable here): the example only constructs MMOCR()."""


class MMOCR:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
'''


def test_stream_mmocr_example_with_a_stand_in_for_mmocr(tmp_path, logo):
    """examples/stream/mmocr imports numpy, PIL and mmocr; mmocr is replaced by a stand-in
    package next to the wrapper (the wrapper's folder is on the worker's path)."""
    pytest.importorskip("PIL", reason="the example imports PIL (pillow, in the demos extra)")
    folder = stream_service(tmp_path / "service", "mmocr")
    (folder / "mmocr" / "utils").mkdir(parents=True)
    (folder / "mmocr" / "__init__.py").write_text("")
    (folder / "mmocr" / "utils" / "__init__.py").write_text("")
    (folder / "mmocr" / "utils" / "ocr.py").write_text(STAND_IN)
    with serving(tmp_path, folder, async_mode=True) as server, server.client() as client:
        items = chunks_over_xsf(client, [b"a", b"b"], sid="mmocr-sid")
        assert [i.data for i in items] == [logo, logo] and items[-1].status == 2
        assert_released(server)
