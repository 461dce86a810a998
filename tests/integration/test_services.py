"""Many services in one daemon (``[[service]]``): one daemon with three services, exercised on
every front (xsf, the native stream, OIP gRPC and REST with its repository, the ASE JSON API and
its WebSocket, health, the console, /metrics, the CLI); a crash of one service's worker under
load on two; services added, replaced and removed while all of them serve; and, each on a small
daemon of its own, the registry (a real etcd) and per-service rights (``[auth] mode = "hmac"``).

The services: ``alpha`` and ``beta`` are one wrapper (tests/wrappers/versioned) with two configs
(it answers ``<answer>:<input>``), ``echo`` is demo/echo named by its serviceId.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import aiohttp
import grpc
import numpy as np
import pytest
from conftest import ROOT, WRAPPERS, Server, free_port, health_status, wait_for
from grpc_health.v1 import health_pb2

from aiges.client import AigesCallError, Client, SigningKey
from aiges.client.credentials import open_channel
from aiges.client.repository import Repository
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

VERSIONED = WRAPPERS / "versioned"
ECHO = ROOT / "demo" / "echo"
SERVING = health_pb2.HealthCheckResponse.SERVING


def versioned(name: str, answer: str, extra: str = "") -> str:
    return f'[[service]]\nwrapper = "{VERSIONED}"\nname = "{name}"\n{extra}\n[service.config]\nanswer = "{answer}"\n'


def daemon_config(port: int, *, http_port: int = 0, metrics_port: int = 0, top: str = "", services: str) -> str:
    http = f'[http]\nlisten = "127.0.0.1:{http_port}"\n' if http_port else ""
    return (
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n[aiges]\ndrain_timeout_ms = 10000\n'
        f'[worker]\ncount = 1\ngpus = ""\n[fc]\nroll = 100\n[log]\nformat = "json"\n'
        f"[metrics]\nport = {metrics_port}\n{http}{top}\n{services}"
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("services")
    port, http_port, metrics_port = free_port(), free_port(), free_port()
    services = (
        versioned("alpha", "A")
        + versioned("beta", "B", "[service.worker]\ncount = 2\n[service.fc]\nmax = 7\n")
        + f'[[service]]\nwrapper = "{ECHO}"\n'
    )
    config = daemon_config(port, http_port=http_port, metrics_port=metrics_port, services=services)
    server = Server(folder, "", port=port, config=config)
    server.http = f"http://127.0.0.1:{http_port}"
    server.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    server.start(timeout=120)
    yield server
    assert server.stop() == 0, server.log()


def once(address: str, service: str, text: bytes = b"hi", **options) -> tuple[int, bytes]:
    with Client(address, service_id=service, timeout=30) as client:
        result = client.once({"text": text}, expect=["text"], check=False, **options)
    return result.code, (result.items[0].data if result.items else b"")


def cmdserver(address: str, command: dict) -> dict:
    with grpc.insecure_channel(address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps(command)), timeout=30)
    return json.loads(reply.body)


def http_json(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def aiges(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiges", *args], capture_output=True, text=True, timeout=300)


def ase_body(text: bytes, status: int = 3) -> dict:
    return {
        "header": {"status": status},
        "payload": {"text": {"text": base64.b64encode(text).decode(), "status": status}},
    }


async def websocket(url: str, frames: list[dict]) -> list[dict]:
    replies = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        for frame in frames:
            await socket.send_str(json.dumps(frame))
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                replies.append(json.loads(message.data))
    return replies


def test_the_grpc_fronts_route_each_call_to_its_service(daemon):
    address = daemon.address
    assert once(address, "alpha") == (0, b"A:hi")
    assert once(address, "beta") == (0, b"B:hi")
    assert once(address, "echo") == (0, b"hi")
    code, _ = once(address, "")
    assert code == 10404  # several services: the call must name one
    with Client(address, service="beta") as client:  # or its aiges-service header (a gateway's) does
        assert client.once({"text": b"h"}, expect=["text"])["text"] == b"B:h"
        with client.session(expect=["text"], transport="stream") as s:
            s.write({"text": b"h"}, last=True)
            assert [item.data for batch in s.results() for item in batch.items] == [b"B:h"]
    with Client(address, service_id="nope") as client, pytest.raises(AigesCallError, match="no service 'nope'"):
        client.once({"text": b"x"}, expect=["text"])
    # sessions: the xsf ops (later calls by handle) and the native stream (its first message)
    for transport, service in (("xsf", "beta"), ("stream", "alpha"), ("xsf", "echo")):
        with Client(address, service_id=service) as client, client.session(expect=["text"], transport=transport) as s:
            s.write({"text": b"1"})
            s.write({"text": b"2"}, last=True)
            texts = [item.data for batch in s.results() for item in batch.items]
        prefix = {"alpha": b"A:", "beta": b"B:", "echo": b""}[service]
        assert texts == [prefix + b"1", prefix + b"2"], (transport, service)
    # a runtime op goes to the service its LoaderInput names: beta's licences, not alpha's
    with Client(address, service_id="beta") as client:
        client.resize_licences(9)
    licences = {s["name"]: s["licences_total"] for s in cmdserver(address, {"cmd": "status"})["services"]}
    assert licences == {"alpha": 100, "beta": 9, "echo": 100}
    with Client(address, service_id="beta") as client:
        client.resize_licences(7)
    # OIP gRPC: by model name (and version); the repository lists every service
    triton = grpcclient.InferenceServerClient(address)
    tensor = grpcclient.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"oip"], dtype=object))
    for model, answer in (("alpha", b"A:oip"), ("beta", b"B:oip"), ("echo", b"oip")):
        result = triton.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("text")])
        assert result.as_numpy("text").tolist() == [answer]
        assert result.get_response().model_name == model
    assert triton.is_model_ready("beta") and triton.is_model_ready("echo", "v1") and not triton.is_model_ready("nope")
    with pytest.raises(InferenceServerException, match="not served here"):
        triton.infer("nope", [tensor])
    index = triton.get_model_repository_index()
    assert sorted((m.name, m.state) for m in index.models) == [("alpha", "READY"), ("beta", "READY"), ("echo", "READY")]
    # health: the server, and each service by name
    for name in ("", "svcName", "alpha", "beta", "echo"):
        assert health_status(address, name) == SERVING, name
    assert health_status(address, "nope") is None  # NOT_FOUND
    # the schema each service declares, through cmdserver and aiges call --service
    assert cmdserver(address, {"cmd": "schema", "service": "echo"})["meta"]["serviceId"] == "echo"
    called = aiges("call", "--addr", address, "--service", "beta", "--input", "text=cli")
    assert called.returncode == 0 and "text: B:cli" in called.stdout, called.stderr
    status = aiges("status", "--addr", address, "--table")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:]}
    assert set(rows) == {"alpha", "beta", "echo"} and rows["beta"][4] == "2/2" and rows["beta"][5] == "0/7"


def test_the_http_fronts_route_by_path_and_model(daemon):
    base = daemon.http
    # the ASE JSON API: each service on its route (a service named apart from its wrapper's
    # serviceId gets /v1/private/<name>)
    for route, answer in (("alpha", b"A:web"), ("beta", b"B:web"), ("echo", b"web")):
        code, body = http_json(f"{base}/v1/private/{route}", ase_body(b"web"))
        assert code == 200 and body["payload"]["text"]["text"] == answer.decode(), body
    code, body = http_json(f"{base}/v1/private/versioned", ase_body(b"web"))
    assert code == 404 and "/v1/private/alpha" in body["error"]
    frames = [ase_body(b"ws1", 0), ase_body(b"ws2", 2)]
    replies = asyncio.run(asyncio.wait_for(websocket(base.replace("http", "ws") + "/v1/private/beta", frames), 30))
    texts = [r["payload"]["text"]["text"] for r in replies if r.get("payload")]
    assert texts == ["B:ws1", "B:ws2"]
    # OIP REST, and its repository
    triton = httpclient.InferenceServerClient(base.removeprefix("http://"))
    tensor = httpclient.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"rest"], dtype=object))
    result = triton.infer("beta", [tensor], outputs=[httpclient.InferRequestedOutput("text")])
    assert result.as_numpy("text").tolist() == [b"B:rest"]
    assert sorted(m["name"] for m in triton.get_model_repository_index()) == ["alpha", "beta", "echo"]
    assert triton.is_model_ready("alpha") and not triton.is_model_ready("nope")
    # the console: every service listed, each with its page; the description per service
    code, described = http_json(f"{base}/console/service.json?service=beta")
    assert code == 200 and described["service"] == "beta" and described["route"] == "/v1/private/beta"
    assert [(s["name"], s["current"]) for s in described["services"]] == [
        ("alpha", False),
        ("beta", True),
        ("echo", False),
    ]
    code, live = http_json(f"{base}/console/status.json?service=beta")
    assert code == 200 and live["service"] == "beta" and len(live["workers"]) == 2 and live["calls"]["calls"] >= 1
    assert http_json(f"{base}/console/service.json?service=nope")[0] == 404
    code, openapi = http_json(f"{base}/openapi.json?service=alpha")
    assert code == 200 and "/v1/private/alpha" in openapi["paths"]


def test_every_per_call_metric_names_its_service(daemon):
    for service in ("alpha", "beta", "echo"):
        assert once(daemon.address, service)[0] == 0
    once(daemon.address, "nope")
    with urllib.request.urlopen(daemon.metrics, timeout=10) as reply:
        text = reply.read().decode()
    for service in ("alpha", "beta", "echo"):
        assert f'aiges_requests_total{{code="0",front="xsf",op="AIIn",service="{service}"}}' in text
        assert f'aiges_request_duration_seconds_count{{front="xsf",op="AIIn",service="{service}"}}' in text
    assert 'aiges_requests_total{code="10404",front="xsf",op="AIIn",service=""}' in text  # routed to none
    assert 'aiges_service_workers_up{service="beta",state="serving"} 2.0' in text
    assert 'aiges_service_licences{service="beta",state="serving"} 7.0' in text
    assert "\naiges_workers 4.0\n" in text and "\naiges_licences 207.0\n" in text  # the daemon's: summed


def load(address: str, service: str, stop: threading.Event, results: list, **options) -> None:
    """One-shot calls to ``service`` until ``stop``; (code, answer) of each in ``results``."""
    with Client(address, service_id=service, timeout=60) as client:
        while not stop.is_set():
            try:
                result = client.once({"text": b"x"}, expect=["text"], check=False, **options)
                results.append((result.code, result.items[0].data if result.items else b""))
            except grpc.RpcError as exc:
                results.append((-1, str(exc.code()).encode()))


class Load:
    """Callers on several services at once, each its own thread."""

    def __init__(self, address: str, plan: dict[str, int], **options) -> None:
        self.stop = threading.Event()
        self.results: dict[str, list] = {service: [] for service in plan}
        self.threads = [
            threading.Thread(target=load, args=(address, service, self.stop, self.results[service]), kwargs=options)
            for service, callers in plan.items()
            for _ in range(callers)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def answered(self, service: str, count: int) -> bool:
        return len(self.results[service]) >= count

    def failures(self, service: str) -> Counter:
        return Counter(code for code, _ in self.results[service] if code != 0)


def test_a_crash_of_one_services_worker_under_load_leaves_the_others_untouched(daemon):
    before = {s["name"]: s for s in cmdserver(daemon.address, {"cmd": "status"})["services"]}
    victim = before["beta"]["worker_pids"][0]
    with Load(daemon.address, {"alpha": 2, "beta": 2, "echo": 1}, params={"delay_ms": "5"}) as running:
        wait_for(lambda: all(running.answered(s, 20) for s in ("alpha", "beta", "echo")), timeout=60)
        os.kill(victim, signal.SIGKILL)
        counts = {s: len(running.results[s]) for s in running.results}

        def restarted() -> bool:
            beta = next(s for s in cmdserver(daemon.address, {"cmd": "status"})["services"] if s["name"] == "beta")
            return beta["worker_restarts"] > before["beta"]["worker_restarts"] and beta["workers_ready"] == 2

        wait_for(restarted, timeout=60)
        wait_for(lambda: all(running.answered(s, counts[s] + 20) for s in counts), timeout=60)
    assert running.failures("alpha") == Counter() and running.failures("echo") == Counter()
    assert set(running.failures("beta")) <= {10909, 10109}  # only calls on the killed worker: 2 callers' at most
    assert sum(running.failures("beta").values()) <= 2
    after = {s["name"]: s for s in cmdserver(daemon.address, {"cmd": "status"})["services"]}
    assert after["alpha"]["worker_pids"] == before["alpha"]["worker_pids"]
    assert after["echo"]["worker_pids"] == before["echo"]["worker_pids"]
    assert victim not in after["beta"]["worker_pids"]


def test_services_are_added_replaced_and_removed_while_all_serve(daemon, tmp_path):
    address = daemon.address
    triton = grpcclient.InferenceServerClient(address)
    entry = {"wrapper": str(VERSIONED), "config": {"answer": "G1"}}
    with Load(address, {"alpha": 1, "echo": 1}) as others:
        triton.load_model("gamma", config=json.dumps(entry))  # add
        assert once(address, "gamma") == (0, b"G1:hi")
        assert health_status(address, "gamma") == SERVING
        # replace under load on gamma too: a session opened on the old version ends on it, and
        # slow calls in flight at the switch finish there (answered G1); then G2 only
        with Client(address, service_id="gamma") as client:
            session = client.session({"text": b"s1"}, expect=["text"], transport="xsf")
            with Load(address, {"gamma": 3}, params={"delay_ms": "150"}) as replaced:
                wait_for(lambda: replaced.answered("gamma", 6), timeout=60)
                (tmp_path / "gamma.toml").write_text(
                    f'wrapper = "{VERSIONED}"\n[worker]\ncount = 2\n[config]\nanswer = "G2"\n'
                )
                done = aiges("service", "replace", "gamma", "--entry", str(tmp_path / "gamma.toml"), "--addr", address)
                assert done.returncode == 0, done.stdout + done.stderr
                switched = len(replaced.results["gamma"])
                wait_for(lambda: replaced.answered("gamma", switched + 6), timeout=60)
            session.write({"text": b"s2"}, last=True)
            texts = [item.data for batch in session.results() for item in batch.items]
        assert texts == [b"G1:s1", b"G1:s2"]
        answers = [answer for _, answer in replaced.results["gamma"]]
        assert replaced.failures("gamma") == Counter()
        assert b"G1:x" in answers and answers[-1] == b"G2:x"
        first_new = answers.index(b"G2:x")  # the switch is once: after it only calls in flight end on G1
        assert answers[:first_new] == [b"G1:x"] * first_new and answers[first_new:].count(b"G1:x") <= 3
        assert once(address, "gamma") == (0, b"G2:hi")
        serving = [s for s in cmdserver(address, {"cmd": "status"})["services"] if s["state"] == "serving"]
        assert next(s for s in serving if s["name"] == "gamma")["workers"] == 2
        # a new version whose self-test fails is stopped: the old one serves on
        refused = aiges("service", "replace", "gamma", "--set", "refuse_sample=true", "--addr", address)
        assert refused.returncode == 1 and "did not load" in refused.stderr
        assert once(address, "gamma") == (0, b"G2:hi")
        # remove under load: gamma's calls end, the others lose nothing
        with Load(address, {"gamma": 2}) as removed:
            wait_for(lambda: removed.answered("gamma", 10), timeout=60)
            gone = aiges("service", "remove", "gamma", "--addr", address)
            assert gone.returncode == 0, gone.stderr
            wait_for(lambda: removed.results["gamma"][-1][0] == 10404, timeout=30)
        assert set(removed.failures("gamma")) == {10404}  # refused once removed; none cut while running
        codes = [code for code, _ in removed.results["gamma"]]
        assert codes[codes.index(10404) :].count(0) <= 2  # after the first refusal only calls in flight end
        assert health_status(address, "gamma") == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        listed = aiges("service", "list", "--addr", address)
        assert listed.returncode == 0 and "gamma" not in listed.stdout and "beta" in listed.stdout
        assert aiges("service", "add", "bad", str(tmp_path / "missing"), "--addr", address).returncode == 1
    assert others.failures("alpha") == Counter() and others.failures("echo") == Counter()
    assert others.answered("alpha", 20) and others.answered("echo", 20)


def test_each_service_is_registered_under_its_name_with_its_own_load(tmp_path, etcd):
    from aiges.client.registry import EtcdProviders

    port = free_port()
    top = f'[registry]\nbackend = "etcd"\nendpoints = "{etcd}"\nttl = 5\n'
    services = versioned("alpha", "A", "[service.fc]\nmax = 20\n") + versioned(
        "beta", "B", 'version = "v7"\n[service.fc]\nmax = 40\n'
    )
    server = Server(tmp_path, "", port=port, config=daemon_config(port, top=top, services=services)).start()
    try:
        alpha = EtcdProviders(etcd, service="alpha", version="v1")
        beta = EtcdProviders(etcd, service="beta", version="v7")
        wait_for(lambda: alpha.snapshot().get(server.address) and beta.snapshot().get(server.address), timeout=30)
        assert alpha.snapshot()[server.address]["licences_total"] == 20
        assert beta.snapshot()[server.address]["licences_total"] == 40
        assert beta.snapshot()[server.address]["service"] == "beta"
        with Client(server.address, service_id="alpha") as client:
            sessions = [client.session({"text": b"x"}, expect=["text"], transport="xsf") for _ in range(10)]
            wait_for(lambda: alpha.snapshot()[server.address]["licences_free"] == 10, timeout=30)
            assert beta.snapshot()[server.address]["licences_free"] == 40  # its own load
            for session in sessions:
                session.close()
        wait_for(lambda: alpha.snapshot()[server.address]["licences_free"] == 20, timeout=30)
        Repository(grpc.insecure_channel(server.address)).unload("beta")
        wait_for(lambda: server.address not in beta.snapshot(), timeout=30)
        assert server.address in alpha.snapshot()
        alpha.close()
        beta.close()
    finally:
        assert server.stop() == 0, server.log()


KEYS = """
[[app]]
app_id = "ops"
api_key = "ops-key"
api_secret = "ops-secret"
services = ["*"]
admin = true

[[app]]
app_id = "shop"
api_key = "shop-key"
api_secret = "shop-secret"
services = ["alpha"]
"""


def test_an_app_calls_the_services_it_is_allowed_and_only_admins_change_them(tmp_path):
    port, http_port = free_port(), free_port()
    (tmp_path / "keys.toml").write_text(KEYS)
    top = '[auth]\nmode = "hmac"\nkeys = "keys.toml"\n'
    services = versioned("alpha", "A") + versioned("beta", "B")
    config = daemon_config(port, http_port=http_port, top=top, services=services)
    server = Server(tmp_path, "", port=port, config=config).start()
    shop, ops = SigningKey("shop-key", "shop-secret", "shop"), SigningKey("ops-key", "ops-secret", "ops")
    try:
        with Client(server.address, service_id="alpha", signing=shop) as client:
            assert client.once({"text": b"x"}, expect=["text"])["text"] == b"A:x"
        for transport in ("xsf", "stream"):
            with Client(server.address, service_id="beta", signing=shop) as client:
                with pytest.raises(AigesCallError, match="not allowed to call 'beta'") as refused:
                    if transport == "xsf":
                        client.once({"text": b"x"}, expect=["text"])
                    else:
                        with client.session(expect=["text"], transport="stream") as session:
                            session.write({"text": b"x"}, last=True)
                            list(session.results())
                assert refused.value.code == 10136
        with Client(server.address, service_id="beta", signing=ops) as client:
            assert client.once({"text": b"x"}, expect=["text"])["text"] == b"B:x"
        with open_channel(server.address, signing=shop) as channel:
            assert {row.name for row in Repository(channel).index()} == {"alpha", "beta"}
            with pytest.raises(grpc.RpcError) as denied:
                Repository(channel).unload("beta")
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED and "10137" in denied.value.details()
        listed = aiges(
            "service", "list", "--addr", server.address, "--api-key", "ops-key", "--api-secret", "ops-secret"
        )
        assert listed.returncode == 0 and "alpha" in listed.stdout
        removed = aiges(
            "service", "remove", "beta", "--addr", server.address, "--api-key", "ops-key", "--api-secret", "ops-secret"
        )
        assert removed.returncode == 0, removed.stderr
    finally:
        assert server.stop() == 0, server.log()


def test_a_daemon_that_cannot_serve_one_of_its_services_says_why(tmp_path):
    port = free_port()
    services = f'[[service]]\nwrapper = "{ECHO}"\n[[service]]\nwrapper = "{ECHO}"\n'  # both named echo
    server = Server(tmp_path, "", port=port, config=daemon_config(port, services=services)).start(wait=False)
    assert server.wait(60) == 2
    assert "two services are named 'echo'" in server.log()
