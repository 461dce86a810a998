"""One-shot calls over utils.XsfCall/call against a real ``aiges serve`` process."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from conftest import wait_for

from aiges.client import AigesCallError, Input
from aiges.protocol.handle import HANDLE_LENGTH, decode_handle, read_handle
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData

TEXT, AUDIO, IMAGE = 0, 1, 2


def echo(client, data: bytes, data_type: int = TEXT, key: str = "text"):
    return client.once({key: Input(data, data_type)}, expect={key: data_type})


@pytest.fixture
def faulty(serve):
    return serve("faulty", workers=1, exec_timeout_ms=2000, licences=8)


@pytest.mark.parametrize("size", [0, 1, 1024, 1 << 20, 8 << 20])
@pytest.mark.parametrize("data_type", [TEXT, IMAGE, AUDIO])
def test_echo_is_byte_exact(serve, size, data_type):
    server = serve("../../demo/echo", maxmb=32)
    payload = random.randbytes(size)
    with server.client() as client:
        result = echo(client, payload, data_type, key="data")
    assert result.code == 0
    assert result.status == LoaderOutput.ONCE
    [item] = result.items
    assert item.name == "data"
    assert item.type == data_type
    assert item.data == payload
    assert item.attributes["status"] == "3"
    assert item.attributes["seq"] == "0"


def test_concurrent_callers_each_get_their_own_answer(serve):
    server = serve("../../demo/echo", workers=2)
    with server.client() as client:

        def call(i: int) -> bytes:
            return client.once({"text": f"caller {i} ".encode() * (i + 1)}, expect=["text"])["text"]

        with ThreadPoolExecutor(32) as executor:
            answers = list(executor.map(call, range(32)))
    assert answers == [f"caller {i} ".encode() * (i + 1) for i in range(32)]


def test_each_worker_sees_only_its_own_gpu(serve):
    server = serve("faulty", workers=2, gpus="0,1")
    seen = {}
    with server.client() as client:

        def call(_):
            result = client.once({"text": b"x"}, params={"mode": "env", "seconds": "0.2"}, expect=["text"])
            return json.loads(result["text"])

        with ThreadPoolExecutor(4) as executor:
            for info in executor.map(call, range(8)):
                seen[info["worker"]] = (info["cuda"], info["pid"])
    assert set(seen) == {"0", "1"}
    assert seen["0"][0] == "0"
    assert seen["1"][0] == "1"
    assert seen["0"][1] != seen["1"][1]


def test_no_gpu_means_an_empty_cuda_visible_devices(serve):
    server = serve("faulty", gpus="")
    with server.client() as client:
        info = json.loads(client.once({"text": b"x"}, params={"mode": "env"}, expect=["text"])["text"])
    assert info["cuda"] == ""


def test_wrapper_section_and_header_pass_reach_the_wrapper(serve):
    server = serve("faulty", wrapper_config={"model": "tiny", "threshold": "0.5"})
    with server.client() as client:
        result = client.once(
            {"text": b"x"}, params={"mode": "env"}, headers={"sid": "sid-123", "appid": "a"}, expect=["text"]
        )
    info = json.loads(result["text"])
    assert info["config"] == {"model": "tiny", "threshold": "0.5"}
    assert info["sid"] == "sid-123"
    assert info["usrTag"] == result.handle


def test_result_data_may_be_json(faulty):
    with faulty.client() as client:
        result = client.once({"text": b"x"}, params={"mode": "json"}, expect=["text"])
    assert json.loads(result["text"]) == {"nested": {"list": [1, 2.5, "x"], "ok": True}}


@pytest.mark.parametrize(
    ("mode", "code", "fragment"),
    [
        ("error", 10909, "seven is not allowed;code=7"),
        ("raise", 10909, "ValueError: boom from the wrapper"),
        ("none", 10909, "returned None"),
        ("undeclared", 10106, "'surprise'"),
        ("exit", 10909, "exited with code 3"),
        ("segv", 10909, "SIGSEGV"),
        ("hang", 10102, "exec_timeout_ms"),
    ],
)
def test_a_failing_wrapper_gets_a_code_and_the_server_keeps_serving(faulty, mode, code, fragment):
    with faulty.client() as client:
        result = client.once({"text": b"x"}, params={"mode": mode}, expect=["text"], check=False)
        assert result.code == code
        assert fragment in result.message
        assert result.status == LoaderOutput.END
        assert client.once({"text": b"after"}, expect=["text"])["text"] == b"after"


def test_queued_calls_survive_a_worker_crash(faulty):
    with faulty.client() as client, ThreadPoolExecutor(8) as executor:
        crash = executor.submit(client.once, {"text": b"x"}, params={"mode": "exit"}, expect=["text"], check=False)
        others = [executor.submit(client.once, {"text": f"{i}".encode()}, expect=["text"]) for i in range(6)]
        assert crash.result().code == 10909
        assert [f.result()["text"] for f in others] == [f"{i}".encode() for i in range(6)]


def test_function_style_wrapper(serve):
    server = serve("functional")
    with server.client() as client:
        assert client.once({"a": b"abc"}, params={"mode": "upper"}, expect=["a"])["a"] == b"ABC"
        both = client.once({"a": b"abc"}, params={"mode": "str"}, expect=["a", "extra"])
        assert both["extra"] == b"a string"
        with pytest.raises(AigesCallError) as failure:
            client.once({"a": b"abc"}, params={"mode": "error"}, expect=["a"])
        assert failure.value.code == 10909
        assert "thirteen is unlucky;code=13" in failure.value.message
        with pytest.raises(AigesCallError) as failure:
            client.once({"a": b"abc"}, params={"mode": "missing"}, expect=["a", "extra"])
        assert "lacks the key(s) len, status, type" in failure.value.message


def raw_call(address: str, body: bytes) -> ResData:
    with grpc.insecure_channel(address) as channel:
        method = channel.unary_unary("/utils.XsfCall/call", request_serializer=None, response_deserializer=None)
        return ResData.FromString(method(body, timeout=10))


def test_malformed_protobuf_gets_10401(faulty):
    reply = raw_call(faulty.address, b"\xff\xff\xff\xff not a protobuf")
    assert reply.code == 10401
    garbage_input = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=b"\x0a\xff\xff")])
    reply = raw_call(faulty.address, garbage_input.SerializeToString())
    assert reply.code == 0
    output = LoaderOutput.FromString(reply.data[0].data)
    assert output.code == 10401
    with faulty.client() as client:
        assert client.once({"text": b"still here"}, expect=["text"])["text"] == b"still here"


def test_ping_unknown_op_and_empty_input(faulty):
    with faulty.client() as client:
        code, _, handle, output = client.call("ping")
        assert code == 0 and output is None and len(handle) == HANDLE_LENGTH
        _, _, _, output = client.call("AIBogus", LoaderInput())
        assert output.code == 10003
        _, _, _, output = client.call("AIHotword", LoaderInput())
        assert output.code == 0
        empty = LoaderInput(state=LoaderInput.ONCE)
        _, _, _, output = client.call("AIIn", empty, params={"SeqNo": "1"})
        assert output.code == 10009


def test_handles_have_the_xsf_form(faulty):
    with faulty.client() as client:
        handles = {client.once({"text": b"x"}, expect=["text"]).handle for _ in range(5)}
    assert len(handles) == 5
    for handle in handles:
        assert len(handle) == HANDLE_LENGTH and handle[0] == "0"
        ip, port = decode_handle(handle)
        assert port == faulty.port
        assert ip.count(".") == 3
        assert read_handle(handle).front == 0


def test_licences_exhausted_gets_10110_in_resdata(serve):
    server = serve("faulty", licences=1)
    with server.client() as client, ThreadPoolExecutor(2) as executor:
        slow = executor.submit(client.once, {"text": b"x"}, params={"mode": "sleep", "seconds": "1.5"}, expect=["text"])
        time.sleep(0.5)
        code, error, _, output = client.call("AIIn", client_input(), params={"SeqNo": "1"})
        assert code == 10110 and "license" in error
        assert output.code == 10110
        assert slow.result()["text"] == b"x"
        assert client.once({"text": b"y"}, expect=["text"])["text"] == b"y"


def client_input() -> LoaderInput:
    from aiges.client.values import loader_input

    return loader_input(state=LoaderInput.ONCE, inputs={"text": b"x"}, expect=["text"], status=3)


def test_sigterm_stops_with_exit_code_0_and_runs_fini(serve, tmp_path):
    marker = tmp_path / "fini.txt"
    server = serve("faulty", workers=2, wrapper_config={"fini_marker": str(marker)})
    with server.client() as client:
        client.once({"text": b"x"}, expect=["text"])
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert marker.read_text().count("fini") == 2


def test_sigint_stops_too(serve):
    server = serve("faulty")
    os.kill(server.process.pid, signal.SIGINT)
    assert server.wait() == 0


def test_a_call_whose_client_gave_up_frees_its_licence_at_once(serve):
    """The worker still runs a call after the client's deadline, but its licence is free as the
    client goes (admission knows the worker is busy): the next caller is admitted and served."""
    server = serve("faulty", licences=1)
    with server.client(timeout=0.3) as impatient, server.client() as client:
        with pytest.raises(grpc.RpcError) as gave_up:
            impatient.once({"text": b"x"}, params={"mode": "sleep", "seconds": "1.5"}, expect=["text"])
        assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: server.status()["licences_used"] == 0, timeout=5)
        assert client.once({"text": b"y"}, expect=["text"])["text"] == b"y"
