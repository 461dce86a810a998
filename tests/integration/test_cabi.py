"""C engines: the example libwrapper.so, built with gcc, served through the AIGes C ABI."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import ROOT, free_port, render_config, require_tool

from aiges.client import AigesCallError, Input

SOURCE = ROOT / "wrappers" / "c"


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> str:
    gcc = require_tool("gcc")
    library = tmp_path_factory.mktemp("engine") / "libwrapper.so"
    subprocess.run(
        [
            gcc,
            "-O2",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-pthread",
            "-shared",
            f"-I{SOURCE}",
            "-o",
            str(library),
            str(SOURCE / "example" / "engine.c"),
        ],
        check=True,
        timeout=120,
    )
    return str(library)


@pytest.mark.parametrize("async_mode", [False, True])
def test_one_shot_calls(serve, engine, async_mode):
    server = serve(engine, async_mode=async_mode, wrapper_config={"prefix": ">> "})
    with server.client() as client:
        result = client.once(
            {"text": b"hello", "image": Input(b"\x00\xff\x10", 2)}, expect={"text": "text", "image": "image"}
        )
        assert result["text"] == b">> HELLO"
        assert result["image"] == b"\x00\xff\x10"
        assert all(item.attributes["status"] == "3" for item in result.items)
        for size in (0, 70_000, 3 << 20):
            payload = bytes(range(256)) * (size // 256)
            assert client.once({"blob": Input(payload, 4)}, expect={"blob": "other"})["blob"] == payload


@pytest.mark.parametrize("async_mode", [False, True])
def test_error_text_comes_from_wrapperError(serve, engine, async_mode):
    server = serve(engine, async_mode=async_mode)
    with server.client() as client:
        with pytest.raises(AigesCallError) as failure:
            client.once({"text": b"fail"}, expect=["text"])
        assert failure.value.code == (10910 if async_mode else 10909)  # as the original: async errors are 10910
        assert failure.value.message == "the engine refused this input;code=7"
        assert client.once({"text": b"ok"}, expect=["text"])["text"] == b"OK"


@pytest.mark.parametrize(("async_mode", "transport"), [(False, "xsf"), (False, "stream"), (True, "stream")])
def test_a_session_through_create_write_read_destroy(serve, engine, async_mode, transport):
    server = serve(engine, async_mode=async_mode)
    with server.client() as client, client.session(expect=["count"], transport=transport) as session:
        for index, chunk in enumerate((b"abc", b"defg", b"hi")):
            session.write({"audio": Input(chunk, 1)}, last=index == 2)
        texts = [item.text for batch in session.results() for item in batch.items]
    assert texts == ["chunk 1: 3 bytes", "chunk 2: 4 bytes", "chunk 3: 2 bytes", "total: 9 bytes in 3 chunks"]


def test_a_segfault_kills_only_its_worker(serve, engine):
    server = serve(engine, workers=2)
    with server.client() as client:
        result = client.once({"text": b"crash"}, expect=["text"], check=False)
        assert result.code == 10909 and "SIGSEGV" in result.message
        for _ in range(4):
            assert client.once({"text": b"after"}, expect=["text"])["text"] == b"AFTER"
        session = client.session(expect=["count"])
        with pytest.raises(AigesCallError) as failure:
            session.write({"audio": b"crash"})
        assert failure.value.code in (10109, 10907)
    assert "worker lost" in server.log() and "SIGSEGV" in server.log()


def test_wrapperInit_failure_and_missing_symbols_stop_the_server(tmp_path, engine):
    config = tmp_path / "aiges.toml"
    config.write_text(render_config(engine, free_port(), wrapper_config={"fail_init": "1"}))
    result = subprocess.run(
        [sys.executable, "-m", "aiges", "serve", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "wrapperInit returned 5: the engine could not start" in result.stderr
    gcc = require_tool("gcc")
    partial = tmp_path / "libpartial.so"
    source = tmp_path / "partial.c"
    source.write_text("int wrapperInit(void* c) { return 0; }\nint wrapperFini() { return 0; }\n")
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(partial), str(source)], check=True)
    config.write_text(render_config(partial, free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "aiges", "serve", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "does not export wrapperError, wrapperExec or wrapperExecAsync" in result.stderr


def test_sigterm_runs_wrapperFini_and_exits_0(serve, engine):
    server = serve(engine)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


@pytest.mark.parametrize("async_mode", [False, True])
def test_personalised_resources_reach_the_engine_as_psr_ids(serve, engine, async_mode):
    server = serve(engine, async_mode=async_mode)
    with server.client() as client:
        client.load_resource(3, {"tag": b"three"})
        client.load_resource(4, {"tag": b"four"})
        assert client.once({"text": b"hi"}, expect=["text"], res_ids=[4, 3])["text"] == b"HI [four] [three]"
        assert client.once({"text": b"hi"}, expect=["text"])["text"] == b"HI"
        with client.session(expect=["count"], res_ids=[3], transport="stream") as session:
            session.write({"audio": Input(b"abc", 1)}, last=True)
            texts = [item.text for batch in session.results() for item in batch.items]
        assert texts[-1] == "total: 3 bytes in 1 chunks [three]"
        with pytest.raises(AigesCallError) as failure:
            client.load_resource(5, {"tag": b"refuse"})
        assert (failure.value.code, failure.value.message) == (10903, "the engine refused this input;code=7")
        client.unload_resource(4)
        with pytest.raises(AigesCallError) as failure:
            client.once({"text": b"hi"}, expect=["text"], res_ids=[4])
        assert failure.value.code == 10120


def test_a_c_engine_exporting_wrapperCancel_is_told_its_caller_went_away(serve, engine):
    """aiges' extension of the ABI: the example engine's sleep_ms call ends early once
    wrapperCancel names its usrTag, so the one worker is free for the next call long before the
    60 s the first would have taken."""
    import grpc

    server = serve(engine)
    with server.client(timeout=0.5) as impatient, pytest.raises(grpc.RpcError) as caught:
        impatient.once({"text": b"slow"}, params={"sleep_ms": "60000"}, expect={"text": "text"})
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with server.client(timeout=20) as client:
        assert client.once({"text": b"next"}, expect={"text": "text"})["text"] == b"NEXT"
