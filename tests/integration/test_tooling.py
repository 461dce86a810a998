"""The command-line tools against real servers: new, check, call, xtest, schema; and the
server's validation of calls against the declared fields."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, WRAPPERS, Server, free_port, wait_for
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
    assert 'aiges_requests_total{code="0",front="xsf",op="AIIn",service="faulty"} 200.0' in metrics
    assert 'aiges_requests_total{code="10909",front="xsf",op="AIIn",service="faulty"} 100.0' in metrics


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


def flaky_xtest(tmp_path: Path, address: str) -> Path:
    """An xtest.toml for the faulty wrapper's flaky mode: every third call fails with 10909."""
    (tmp_path / "sample.txt").write_text("load")
    config = tmp_path / "xtest.toml"
    config.write_text(f"""
[xtest]
taddrs = "{address}"
[svcMode]
multiThr = 2
timeout = 5000
[parameter]
mode = "flaky"
[data]
payload = "in1"
expect = "out1"
[in1]
inputSrc = "sample.txt"
name = "text"
type = "text"
[out1]
name = "text"
type = "text"
""")
    return config


LIVE_LINE = re.compile(
    r"^xtest (?P<t>[\d.]+)s  (?P<done>\d+) done  last (?P<span>\d+) s: (?P<rps>[\d.]+)/s  "
    r"errors (?P<errors>\d+)(?: \((?P<codes>[^)]*)\))?  p50 (?P<p50>[\d.]+) ms  p99 (?P<p99>[\d.]+) ms  "
    r"errors in all (?P<total>\d+)$"
)


def test_xtest_prints_live_lines_when_stdout_is_not_a_terminal(serve, tmp_path):
    """A pipe gets a plain line per update: throughput, errors by code and p50/p99 of the last
    seconds; the last one, after the run, agrees with the report."""
    server = serve("faulty")
    config = flaky_xtest(tmp_path, server.address)
    report_path = tmp_path / "report.json"
    result = aiges(
        *("xtest", "-c", str(config), "--rate", "60", "--duration", "3", "--live-every", "0.5", "--window", "2"),
        *("--json", str(report_path)),
    )
    assert result.returncode == 1, result.stderr  # a third of the calls fail
    report = json.loads(report_path.read_text())
    lines = [LIVE_LINE.match(line) for line in result.stdout.splitlines() if line.startswith("xtest ")]
    assert len(lines) >= 4 and all(lines), result.stdout
    assert any(m["codes"] and m["codes"].startswith("10909: ") for m in lines)
    assert all(int(m["span"]) <= 2 for m in lines)
    assert all(float(m["p50"]) <= float(m["p99"]) for m in lines)
    done = [int(m["done"]) for m in lines]
    assert done == sorted(done)
    last = lines[-1]
    assert int(last["done"]) == report["requests"] and int(last["total"]) == report["errors"]


def test_xtest_live_view_on_a_terminal_is_a_rich_table(serve, tmp_path):
    """On a terminal (a pseudo-terminal here) the view is redrawn in place by rich, not printed
    line by line."""
    import os
    import pty

    server = serve(ROOT / "demo" / "echo")
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiges", "xtest", "--addr", server.address, "--input", "text=hi", "--expect", "text"]
        + ["--rate", "50", "--duration", "2", "--live-every", "0.3"],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.PIPE,
        env=dict(os.environ, COLUMNS="100", TERM="xterm"),
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
    screen = b"".join(chunks).decode(errors="replace")
    assert screen.count("aiges xtest") >= 2  # redrawn
    assert "\x1b[" in screen and "requests/s" in screen and "p50" in screen
    assert not re.search(r"^xtest [\d.]+s ", screen, re.M)  # no plain lines
    assert "throughput" in screen  # then the closing report


def test_xtest_html_report_draws_what_the_report_counts(serve, tmp_path):
    """--html: one file with no outside reference; its charts, read back from their data-*
    attributes, hold every call (the distribution), every error (the errors per second) and a
    point per second of the run (latency over time)."""
    import xml.etree.ElementTree as ET

    server = serve("faulty")
    config = flaky_xtest(tmp_path, server.address)
    page_path, report_path = tmp_path / "report.html", tmp_path / "report.json"
    result = aiges(
        *("xtest", "-c", str(config), "--rate", "80", "--duration", "2.5", "--live-every", "0"),
        *("--html", str(page_path), "--json", str(report_path)),
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(report_path.read_text())
    page = page_path.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=", page)
    svg = "{http://www.w3.org/2000/svg}"
    charts = {c.get("class"): c for c in (ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", page, re.S))}
    assert set(charts) == {"latency-over-time", "throughput", "distribution"}

    def counts(chart: str, group: str) -> list[float]:
        [bars] = [g for g in charts[chart].iter(f"{svg}g") if g.get("data-name") == group]
        return [float(r.get("data-count")) for r in bars.iter(f"{svg}rect")]

    assert sum(counts("distribution", "calls")) == report["requests"]
    assert sum(counts("throughput", "errors")) == report["errors"] == report["errors_by_code"]["10909"]
    [p50] = [g for g in charts["latency-over-time"].iter(f"{svg}g") if g.get("data-name") == "p50"]
    assert len(list(p50.iter(f"{svg}circle"))) == len(report["timeline"])
    markers = {
        g.get("data-name"): float(g.get("data-x"))
        for g in charts["distribution"].iter(f"{svg}g")
        if g.get("class") == "marker"
    }
    assert markers["p50"] == report["latency_ms"]["p50"]
    assert "10909" in page and f"<td class='n'>{report['requests']}</td>" in page


def test_xtest_serves_its_own_figures_to_prometheus(serve, tmp_path):
    """--prometheus PORT: while the run goes, /metrics counts its requests by code and times
    them; once stopped (SIGINT), the report holds at least what was scraped."""
    import signal

    from prometheus_client.parser import text_string_to_metric_families

    server = serve("faulty")
    config = flaky_xtest(tmp_path, server.address)
    port = free_port()
    report_path = tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "aiges", "xtest", "-c", str(config), "--rate", "50", "--duration", "60"]
        + ["--prometheus", f"127.0.0.1:{port}", "--live-every", "0", "--json", str(report_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def scrape() -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return {}
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()))
                samples[key] = sample.value
        return samples

    try:
        seen = wait_for(lambda: (s := scrape()).get("aiges_xtest_requests_total{code=10909}", 0) >= 3 and s, timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    ok, failed = seen["aiges_xtest_requests_total{code=0}"], seen["aiges_xtest_requests_total{code=10909}"]
    assert ok >= failed and seen["aiges_xtest_latency_seconds_count"] >= ok + failed - 2  # not one atomic read
    assert seen["aiges_xtest_start_time_seconds"] > 0
    assert process.returncode == 1, out + err
    report = json.loads(report_path.read_text())
    assert report["successes"] >= ok and report["errors_by_code"]["10909"] >= failed
    assert scrape() == {}  # gone with the run


def test_xtest_refuses_a_prometheus_port_it_cannot_listen_on(serve, tmp_path):
    import socket

    server = serve(ROOT / "demo" / "echo")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = aiges(
            *("xtest", "--addr", server.address, "--input", "text=hi", "--expect", "text", "--requests", "1"),
            *("--prometheus", f"127.0.0.1:{port}"),
        )
    assert result.returncode == 2 and f"--prometheus 127.0.0.1:{port}" in result.stderr
    bad = aiges("xtest", "--addr", server.address, "--input", "text=hi", "--prometheus", "nine")
    assert bad.returncode == 2 and "--prometheus nine" in bad.stderr
