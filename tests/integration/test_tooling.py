"""The command-line tools against real servers: new, check, call, xtest, schema; and the
server's validation of calls against the declared fields."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, WRAPPERS, Server, free_port
from openapi_spec_validator import validate

from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput


def aiges(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aiges", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("stream", [False, True])
def test_new_makes_a_service_that_checks_tests_serves_and_answers(tmp_path, stream):
    made = aiges("new", "wordy", *(["--stream"] if stream else []), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "wordy"
    expected = {
        "wrapper.py",
        "aiges.toml",
        "requirements.txt",
        "Dockerfile",
        "README.md",
        "test_data/sample.txt",
        "tests/test_wrapper.py",
    }
    assert expected <= {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert "FROM ${AIGES_IMAGE}" in (folder / "Dockerfile").read_text()
    checked = aiges("check", cwd=folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "aiges check: OK" in checked.stdout
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests"], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    port = free_port()
    server = Server(tmp_path, folder / "wrapper.py", port=port)
    server.config_path = folder / "aiges.toml"
    server.start(extra_args=("--port", str(port)))
    try:
        options = ["--stream", "--chunk", "20"] if stream else ["--param", "case=upper"]
        called = aiges("call", "--addr", server.address, "--input", "text=@test_data/sample.txt", *options, cwd=folder)
        assert called.returncode == 0, called.stderr
        words = len((folder / "test_data" / "sample.txt").read_bytes().split())
        if stream:
            last = json.loads(called.stdout.strip().splitlines()[-1].split(": ", 1)[1])
            assert last["last"] is True and last["chunk"] == 5
        else:
            stats = json.loads(called.stdout.split(": ", 1)[1])
            assert stats["words"] == words and stats["text"].startswith("THE QUICK")
    finally:
        server.stop()


def test_call_prints_text_saves_binary_and_reports_failures(serve, tmp_path):
    server = serve(ROOT / "demo" / "echo")
    image = tmp_path / "dot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    called = aiges(
        "call",
        "--addr",
        server.address,
        "--input",
        "text=hello there",
        "--input",
        f"image=@{image}",
        "--expect",
        "text",
        "--expect",
        "image:image",
        "-o",
        str(tmp_path / "out"),
    )
    assert called.returncode == 0, called.stderr
    assert "text: hello there" in called.stdout
    assert (tmp_path / "out" / "image.image").read_bytes() == image.read_bytes()
    failed = aiges("call", "--addr", server.address, "--input", "text=hi", "--expect", "other")
    assert failed.returncode == 1
    assert "error 10106" in failed.stderr and "'text'" in failed.stderr
    unreachable = aiges(
        "call", "--addr", f"127.0.0.1:{free_port()}", "--input", "text=hi", "--expect", "text", "--timeout", "2"
    )
    assert unreachable.returncode == 1 and "UNAVAILABLE" in unreachable.stderr


def test_call_builds_its_expect_list_from_the_servers_schema(serve):
    server = serve("declared")
    called = aiges("call", "--addr", server.address, "--input", "text=hi", "--param", "lang=zh")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout.split(": ", 1)[1])["params"]["lang"] == "zh"


def test_xtest_report_adds_up_and_matches_the_servers_metrics(serve, tmp_path):
    metrics_port = free_port()
    server = serve("faulty", metrics_port=metrics_port)
    sample = tmp_path / "sample.txt"
    sample.write_text("load")
    config = tmp_path / "xtest.toml"
    config.write_text(f"""
[xtest]
taddrs = "svcName@{server.address}"
[svcMode]
multiThr = 6
loopCnt = 300
sessMode = 0
timeout = 5000
[parameter]
mode = "flaky"
[data]
payload = "in1"
expect = "out1"
[in1]
inputSrc = "{sample}"
name = "text"
type = "text"
[out1]
name = "text"
type = "text"
""")
    report_path = tmp_path / "report.json"
    result = aiges("xtest", "-c", str(config), "--json", str(report_path))
    assert result.returncode == 1  # some calls failed, by design
    report = json.loads(report_path.read_text())
    assert report["requests"] == 300
    assert report["requests"] == report["successes"] + report["errors"]
    assert report["errors_by_code"] == {"10909": 100} and report["successes"] == 200
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["throughput_rps"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        metrics = reply.read().decode().splitlines()
    assert 'aiges_requests_total{code="0",front="xsf",op="AIIn"} 200.0' in metrics
    assert 'aiges_requests_total{code="10909",front="xsf",op="AIIn"} 100.0' in metrics


def test_xtest_drives_sessions_with_paced_slices(serve, tmp_path):
    server = serve(ROOT / "demo" / "echo")
    audio = tmp_path / "audio.pcm"
    audio.write_bytes(bytes(range(256)) * 20)
    config = tmp_path / "xtest.toml"
    config.write_text(f"""
[xtest]
taddrs = "{server.address}"
[svcMode]
multiThr = 3
loopCnt = 9
sessMode = 1
[data]
payload = "a"
expect = "b"
[a]
inputSrc = "{audio}"
sliceOn = 1
sliceSize = 1280
interval = 10
name = "audio"
type = "audio"
[b]
name = "audio"
type = "audio"
""")
    report_path = tmp_path / "report.json"
    result = aiges("xtest", "-c", str(config), "--json", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["requests"] == 9 and report["errors"] == 0
    assert 0 < report["first_result_ms"]["p50"] < report["latency_ms"]["p50"]
    assert report["latency_ms"]["p50"] >= 30  # four slices paced 10 ms apart


def test_xtest_open_loop_keeps_its_rate(serve):
    server = serve(ROOT / "demo" / "echo")
    result = aiges(
        "xtest",
        "--addr",
        server.address,
        "--input",
        "text=hi",
        "--expect",
        "text",
        "--rate",
        "200",
        "--duration",
        "2",
        "--json",
        "/dev/stdout",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert 360 <= report["requests"] <= 401
    assert report["errors"] == 0


def declared_call(client, params, inputs=None):
    message = loader_input(
        state=LoaderInput.ONCE,
        inputs=inputs if inputs is not None else {"text": b"x"},
        params=params,
        expect=["result"],
        status=3,
    )
    return client.call("AIIn", message, params={"SeqNo": "1"})[3]


@pytest.mark.parametrize(
    ("params", "inputs", "code", "fragment"),
    [
        ({}, None, 10107, "parameter 'lang' is required"),
        ({"lang": "fr"}, None, 10107, "parameter 'lang' must be one of ['en', 'zh'], got 'fr'"),
        ({"lang": "en", "top_k": "0"}, None, 10107, "parameter 'top_k' must be between 1 and 10"),
        ({"lang": "en", "top_k": "two"}, None, 10107, "parameter 'top_k' must be an integer"),
        ({"lang": "en", "temperature": "2.5"}, None, 10107, "parameter 'temperature' must be between 0 and 2"),
        ({"lang": "en", "verbose": "maybe"}, None, 10107, "parameter 'verbose' must be true or false"),
        ({"lang": "en", "prompt": "too long"}, None, 10107, "parameter 'prompt' must be 0 to 5 characters"),
        ({"lang": "en"}, {"image": b"x"}, 10009, "input 'text' is missing"),
    ],
)
def test_the_server_validates_calls_against_the_declared_fields(serve, params, inputs, code, fragment):
    server = serve("declared")
    with server.client() as client:
        output = declared_call(client, params, inputs)
        assert output.code == code
        assert fragment in output.err
        ok = declared_call(client, {"lang": "en", "top_k": "10", "temperature": "0.5", "verbose": "true"})
        assert ok.code == 0


def test_a_session_first_frame_is_validated_too(serve):
    server = serve("declared")
    with server.client() as client:
        message = loader_input(state=LoaderInput.STREAM, params={"lang": "fr"}, expect=["result"])
        _, _, _, output = client.call("AIIn", message, params={"SeqNo": "1"})
        assert output.code == 10107 and "'lang'" in output.err
        message = loader_input(state=LoaderInput.STREAM, params={"lang": "en"}, expect=["result"])
        _, _, _, output = client.call("AIIn", message, params={"SeqNo": "1"})
        assert output.code == 0


def test_schema_has_the_original_shape_and_a_valid_openapi(tmp_path):
    config = tmp_path / "aiges.toml"
    config.write_text(f'[aiges]\nwrapper = "{WRAPPERS / "declared"}"\n')
    printed = aiges("schema", "-c", str(config))
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    assert set(schema) == {"meta", "schemainput", "schemaoutput"}
    assert schema["meta"]["route"] == "/v2/private/declared"
    assert schema["meta"]["declared"]["input"] == {"text": {"dataType": "text"}, "image": {"dataType": "image"}}
    parameter = schema["schemainput"]["properties"]["parameter"]["properties"]["declared"]
    assert parameter["required"] == ["lang"]
    assert parameter["properties"]["lang"] == {"type": "string", "enum": ["en", "zh"], "defaultVal": "en"}
    assert parameter["properties"]["top_k"]["minimum"] == 1 and parameter["properties"]["top_k"]["type"] == "integer"
    assert schema["schemainput"]["properties"]["payload"]["required"] == ["text"]
    openapi = aiges("schema", "-c", str(config), "--openapi")
    document = json.loads(openapi.stdout)
    validate(document)
    assert "/v2/private/declared" in document["paths"]
    assert "defaultVal" not in openapi.stdout


def test_check_fails_clearly_on_a_broken_wrapper(tmp_path):
    config = tmp_path / "aiges.toml"
    config.write_text(f'[aiges]\nwrapper = "{WRAPPERS / "init_fails"}"\n')
    result = aiges("check", "-c", str(config))
    assert result.returncode == 2
    assert "wrapperInit returned 42: the model file is missing" in result.stderr
    assert "[worker]" in result.stdout
