"""The web console's server side without a browser: the form it builds from declared fields, the
commands it writes for a call, the live panel's rolling window, and the page's policy."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT, WRAPPERS

from aiges.errors import AigesError
from aiges.plugins.loader import load_plugin
from aiges.server.http import console, console_form, console_snippets
from aiges.server.model import Model
from aiges.server.recent_calls import RecentCalls, percentile


@pytest.fixture(autouse=True)
def fresh_wrapper_module():
    yield
    sys.modules.pop("wrapper", None)


def form_of(folder) -> dict:
    plugin = load_plugin(folder)
    schema = plugin.schema()
    # as Model.of names a wrapper that names itself nothing
    model = Model(plugin.service_id or "svcName", plugin.version or "1", schema, "stream" in plugin.capabilities)
    return console_form.form(model, plugin.capabilities)


def test_each_param_gets_the_control_its_declaration_asks_for():
    form = form_of(WRAPPERS / "declared")
    controls = {param["name"]: param for param in form["params"]}
    assert controls["lang"] == {
        "name": "lang",
        "type": "string",
        "required": True,
        "default": "en",
        "control": "select",
        "enum": ["en", "zh"],
    }
    assert controls["top_k"]["control"] == "number" and controls["top_k"]["step"] == 1
    assert (controls["top_k"]["minimum"], controls["top_k"]["maximum"], controls["top_k"]["default"]) == (1, 10, 3)
    assert controls["temperature"]["step"] == "any" and controls["temperature"]["maximum"] == 2
    assert controls["verbose"]["control"] == "switch"
    assert controls["prompt"]["control"] == "text" and controls["prompt"]["maxLength"] == 5
    inputs = {field["name"]: field for field in form["inputs"]}
    assert inputs["text"]["type"] == "text" and inputs["text"]["required"] is True
    assert inputs["image"]["type"] == "image" and inputs["image"]["required"] is False
    assert [output["name"] for output in form["outputs"]] == ["result"]
    assert form["declared"] and form["once"] and form["sessions"] and form["route"] == "/v2/private/declared"


def test_declared_pcm_streams_in_real_time_and_other_inputs_in_fixed_chunks():
    [audio] = form_of(ROOT / "demo" / "audio_stream")["inputs"]
    assert audio["pcm"] == {"sample_rate": 16000, "channels": 1, "bit_depth": 16}
    assert (audio["chunk_bytes"], audio["interval_ms"]) == (3200, 100)  # 100 ms of 16 kHz 16-bit mono
    [image] = form_of(ROOT / "demo" / "digits")["inputs"]
    assert "pcm" not in image and image["attributes"] == {"encoding": "png"}
    assert console_form.pcm_bytes_per_s("audio", {"encoding": "opus", "sample_rate": 16000}) == 0
    assert console_form.pcm_bytes_per_s("audio", {"sample_rate": 8000, "channels": 2, "bit_depth": 16}) == 32000


def test_a_wrapper_that_declares_nothing_gets_a_free_form():
    form = form_of(WRAPPERS / "functional")
    assert form["declared"] is False and form["params"] == [] and form["inputs"] == [] and form["outputs"] == []
    assert form["route"] == "/1/private/svcName" and form["once"]
    assert form["data_types"] == ["text", "audio", "image", "video", "other"]


def call(request: dict, **body) -> console_snippets.Call:
    return console_snippets.parse_call(
        {"request": request, **body},
        service_id="echo",
        route="/v1/private/echo",
        http_base="http://127.0.0.1:8080",
        grpc_address="127.0.0.1:5090",
        expect={"text": "text"},
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_commands_quote_what_the_shell_would_expand(tmp_path):
    """Params with quotes, dollars and backticks reach the server as typed: the curl command's
    heredoc and the aiges call arguments are run through bash and compared."""
    tricky = "it's $HOME `id` \\n"
    request = {
        "parameter": {"echo": {"prefix": tricky}},
        "payload": {"text": {"text": b64(b"x"), "status": 3}, "image": {"image": b64(b"\x89PNG")}},
    }
    made = call(request, files={"image": "my picture.png"})
    curl = console_snippets.curl(made)
    assert "$(base64 < 'my picture.png' | tr -d '\\n')" in curl
    (tmp_path / "my picture.png").write_bytes(b"\x89PNG")
    body = curl.split("<<EOF\n", 1)[1].rsplit("\nEOF", 1)[0]
    expanded = subprocess.run(["bash", "-c", f"cat <<EOF\n{body}\nEOF"], cwd=tmp_path, capture_output=True, text=True)
    import json

    sent = json.loads(expanded.stdout)
    assert sent["parameter"]["echo"]["prefix"] == tricky
    assert base64.b64decode(sent["payload"]["image"]["image"]) == b"\x89PNG"
    aiges = console_snippets.aiges_call(made)
    arguments = subprocess.run(
        ["bash", "-c", "printf '%s\\n' " + aiges.replace("\\\n", " ").removeprefix("aiges call")],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert f"prefix={tricky}" in arguments and "image=@my picture.png:image" in arguments
    assert "Path('my picture.png').read_bytes()" in console_snippets.python(made)


def test_a_session_command_streams_the_chosen_input_in_chunks_ending_with_status_2():
    request = {"payload": {"text": {"text": b64(b"abcdefghij")}}}
    made = call(request, stream="text", chunk_bytes=4, interval_ms=0)
    lines = console_snippets.grpcurl(made).splitlines()
    assert lines[0].endswith("aiges.v1.Session/Stream <<'EOF'") and lines[-1] == "EOF"
    import json

    opening, *chunks = (json.loads(line) for line in lines[1:-1])
    assert opening["serviceId"] == "echo" and opening["expect"] == [{"name": "text", "dataType": "TEXT"}]
    assert [base64.b64decode(c["pl"][0]["data"]) for c in chunks] == [b"abcd", b"efgh", b"ij"]
    assert [c["pl"][0]["meta"]["attribute"]["status"] for c in chunks] == ["1", "1", "2"]
    python = console_snippets.python(made)
    assert "range(0, len(data), 4)" in python and 'transport="stream"' in python
    assert "--stream \\\n  --chunk 4" in console_snippets.aiges_call(made)


def test_a_large_one_shot_is_not_pasted_into_grpcurl():
    made = call({"payload": {"text": {"text": b64(bytes(100_000))}}}, files={"text": "big.bin"})
    assert "too long to paste" in console_snippets.grpcurl(made)
    assert "big.bin" in console_snippets.curl(made) and len(console_snippets.curl(made)) < 1000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"request": []}, "request must be"),
        ({"request": {"payload": {"text": {"text": "***"}}}}, "not base64"),
        ({"request": {}, "stream": "nope"}, "stream names no input"),
        ({"request": {}, "chunk_bytes": 0}, "chunk_bytes must be positive"),
        ({"request": {}, "files": ["a"]}, "files must map"),
    ],
)
def test_a_malformed_description_is_a_10009(body, message):
    with pytest.raises(AigesError) as failure:
        console_snippets.parse_call(
            body, service_id="echo", route="/r", http_base="http://h", grpc_address="h:1", expect={}
        )
    assert failure.value.code == 10009 and message in failure.value.message


def test_recent_calls_give_rate_and_percentiles_over_the_window():
    recent = RecentCalls(kept=1000)
    for index in range(100):  # one call every 0.1 s over 10 s, taking 1..100 ms
        at = 100.0 + index * 0.1
        recent.record(at - (index + 1) / 1000, 0 if index % 10 else 7, now=at)
    summary = recent.summary(window_s=10.0, now=110.0)
    assert summary["calls"] == 100 and summary["calls_per_s"] == 10.0 and summary["errors_per_s"] == 1.0
    assert summary["p50_ms"] == pytest.approx(50) and summary["p99_ms"] == pytest.approx(99)
    later = recent.summary(window_s=10.0, now=115.0)  # half of them are older than the window
    assert later["calls"] == 50 and later["p50_ms"] == pytest.approx(75)
    assert recent.summary(now=1000.0) == {
        "window_s": 10.0,
        "calls": 0,
        "calls_per_s": 0.0,
        "errors_per_s": 0.0,
        "p50_ms": None,
        "p99_ms": None,
    }
    assert percentile([1.0], 0.99) == 1.0 and percentile([1.0, 2.0], 0.5) == 1.0


def test_more_calls_than_kept_shrink_the_window_to_what_is_kept():
    recent = RecentCalls(kept=10)
    for index in range(50):
        recent.record(0.0, 0, now=index * 0.01)
    summary = recent.summary(window_s=10.0, now=0.5)
    assert summary["calls"] == 10 and summary["window_s"] == pytest.approx(0.1) and summary["calls_per_s"] == 100


def test_the_page_policy_allows_its_import_map_and_nothing_from_elsewhere():
    page = console.PAGE.read_text()
    [import_map] = re.findall(r'<script type="importmap">(.*?)</script>', page, re.S)
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    policy = console.csp(page)
    assert f"'sha256-{digest}'" in policy and "default-src 'self'" in policy and "http" not in policy
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # every asset from this server
    for asset in re.findall(r'"(/console/static/[^"]+)"', page):
        assert (console.STATIC / asset.removeprefix("/console/static/")).is_file(), asset


def test_the_wheel_carries_every_static_file():
    """pyproject's package-data globs match every file of the console and its vendored libraries
    (the images are built from the wheel: a file they miss is a 404 in the image only)."""
    from fnmatch import fnmatch

    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "aiges.server.http"
    ]
    package = console.STATIC.parent
    files = [path.relative_to(package).as_posix() for path in console.STATIC.rglob("*") if path.is_file()]
    assert len(files) > 10
    # setuptools' "*" does not cross a "/": compare part by part
    missed = [
        name
        for name in files
        if not any(
            len(glob.split("/")) == len(name.split("/")) and all(map(fnmatch, name.split("/"), glob.split("/")))
            for glob in globs
        )
    ]
    assert missed == []


def test_outputs_the_request_asks_for_are_in_every_command():
    """A wrapper that declares no outputs answers those the call names (ASE JSON: an object
    among the params): the commands ask for the same ones."""
    request = {
        "parameter": {"echo": {"mode": "upper", "mask": {"data_type": "image"}}},
        "payload": {"text": {"text": b64(b"hi"), "status": 3}},
    }
    made = call(request)
    assert (
        made.expect == {"text": "text", "mask": "image"} and made.asked == ["mask"] and made.params == {"mode": "upper"}
    )
    commands = console_snippets.snippets(made)
    assert "--expect text:text" in commands["aiges"] and "--expect mask:image" in commands["aiges"]
    assert "expect={'text': 'text', 'mask': 'image'}" in commands["python"]
    assert "--expect" not in console_snippets.snippets(call({"payload": request["payload"]}))["aiges"]
