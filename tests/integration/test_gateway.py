"""``aiges gateway`` for real: Debian's HAProxy in front of real aiges hosts registered in a real
etcd. Every protocol goes through it (xsf and its sessions, OIP over gRPC and REST, the ASE JSON
API and its WebSockets), hosts that register, drain or leave change HAProxy's servers through its
runtime API with no reload, a new service gets its backend by a reload and is routed by name,
weights follow free licences, TLS ends at HAProxy, and its health and stats answer."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
from conftest import WRAPPERS, Server, free_port, require_tool, wait_for
from test_registry_resume import Etcd
from tls_certs import CertificateAuthority

from aiges.client import AigesCallError, Client, SigningKey, TlsOptions
from aiges.client.values import loader_input
from aiges.platform.gateway.runtime_api import RuntimeApi, ServerState
from aiges.protocol.handle import decode_handle
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, Session
from aiges.protocol.xsf_pb2_grpc import XsfCallStub

ECHO = Path(__file__).resolve().parents[2] / "demo" / "echo"


class Gateway:
    def __init__(self, workdir: Path, etcd: str, *extra: str) -> None:
        self.workdir = workdir
        self.grpc_port, self.http_port, self.stats_port = free_port(), free_port(), free_port()
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self.http = f"127.0.0.1:{self.http_port}"
        self.stats = f"127.0.0.1:{self.stats_port}"
        self.log_path = workdir / "gateway.log"
        self.access_path = workdir / "access.log"
        self.api = RuntimeApi(workdir / "haproxy" / "admin.sock")
        argv = [sys.executable, "-m", "aiges", "gateway", "--etcd", etcd, "--bind", "127.0.0.1"]
        argv += ["--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)]
        argv += ["--stats-port", str(self.stats_port), "--workdir", str(workdir / "haproxy")]
        argv += ["--access-log", str(self.access_path), "--log-format", "json", "--drain-s", "5", *extra]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ)
        try:
            wait_for(lambda: self.events("gateway serving") or self._exited(), 30)
        except BaseException:
            self.stop()
            raise

    def _exited(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited:\n{self.log_path.read_text()}")
        return False

    def events(self, event: str) -> list[dict]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == event:
                    found.append(entry)
        return found

    def servers(self) -> list[ServerState]:
        return asyncio.run(self.api.servers())

    def server(self, address: str, backend: str = "echo.v1_grpc") -> ServerState | None:
        return next((s for s in self.servers() if s.backend == backend and s.address == address), None)

    def up(self, *addresses: str) -> bool:
        return all((state := self.server(a)) is not None and state.up for a in addresses)

    def access(self) -> list[dict]:
        text = self.access_path.read_text(errors="replace") if self.access_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        finally:
            self._log.close()
        return code


def host(workdir: Path, etcd: str, wrapper: Path = ECHO, licences: int = 10) -> Server:
    registry = f'[registry]\nbackend = "etcd"\nendpoints = "{etcd}"\nttl = 3\n'
    http = f'[http]\nlisten = "127.0.0.1:{free_port()}"\n'
    return Server(workdir, wrapper, licences=licences, extra=registry + http).start()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_tool("haproxy")
    workdir = tmp_path_factory.mktemp("gateway")
    store = Etcd(workdir)
    store.start()
    hosts: list[Server] = []
    gateway: Gateway | None = None
    try:
        hosts += [host(workdir, store.endpoint, licences=10), host(workdir, store.endpoint, licences=20)]
        gateway = Gateway(workdir, store.endpoint)
        wait_for(lambda: gateway.up(*(h.address for h in hosts)), 30)
        yield store, hosts, gateway, workdir
    finally:
        for server in hosts:
            server.stop()
        if gateway is not None:
            gateway.stop()
        store.kill()


def peer(handle: str) -> str:
    ip, port = decode_handle(handle)
    return f"{ip}:{port}"


def test_xsf_calls_are_balanced_over_the_hosts(stack):
    _, hosts, gateway, _ = stack
    with Client(gateway.grpc) as client:
        served = {peer(client.once({"text": b"hi"}, expect=["text"]).handle) for _ in range(30)}
    assert served == {h.address for h in hosts}


def test_an_xsf_sessions_calls_go_to_its_host_by_its_handle(stack):
    _, hosts, gateway, _ = stack
    opened = set()
    with Client(gateway.grpc) as client:
        for n in range(8):
            with client.session(expect=["text"]) as session:
                session.write({"text": f"part {n}".encode()})
                session.write({"text": b" end"}, last=True)
                texts = b"".join(item.data for batch in session.results() for item in batch.items)
            assert texts == f"part {n} end".encode()
            opened.add(peer(session.handle))
    assert opened == {h.address for h in hosts}


def test_without_the_handle_header_a_sessions_calls_would_scatter(stack):
    """The check above can fail: the same calls without ``aiges-handle`` are balanced one by one,
    and a frame that reaches the other host is answered 10008 (no such session)."""
    _, _, gateway, _ = stack
    codes = []
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = XsfCallStub(channel)
        for _ in range(6):
            opening = loader_input(state=LoaderInput.STREAM, inputs=None, expect=["text"], sync_id=0, status=None)
            reply = stub.call(
                ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=opening.SerializeToString())])
            )
            handle = reply.s.h
            for seq in (1, 2, 3):
                frame = loader_input(state=LoaderInput.STREAM, inputs={"text": b"x"}, sync_id=seq, status=1)
                answer = stub.call(
                    ReqData(op="AIIn", s=Session(h=handle), data=[DataMeta(data=frame.SerializeToString())])
                )
                output = LoaderOutput.FromString(answer.data[0].data) if answer.data else None
                codes.append(answer.code or (output.code if output is not None else 0))
            stub.call(ReqData(op="AIExcp", s=Session(h=handle)), metadata=(("aiges-handle", handle),))
    assert 10008 in codes, codes


def test_the_ase_json_api_its_websockets_and_oip_go_through_the_gateway(stack):
    _, hosts, gateway, _ = stack
    body = json.dumps({"payload": {"text": {"text": base64.b64encode(b"hello").decode()}}}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(f"http://{gateway.http}/v1/private/echo", body), timeout=10
    ) as r:
        answer = json.loads(r.read())
    assert answer["payload"]["text"]["text"] == "hello"  # text outputs come back as text

    async def websocket() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://{gateway.http}/v1/private/echo") as ws:
            for status, text in ((0, b"one "), (2, b"two")):
                payload = {"text": {"text": base64.b64encode(text).decode(), "status": status}}
                await ws.send_str(json.dumps({"header": {"status": status}, "payload": payload}))
            return [json.loads(message.data) async for message in ws]

    replies = asyncio.run(websocket())
    texts = "".join(r["payload"]["text"]["text"] for r in replies if "payload" in r)
    assert texts == "one two" and replies[-1]["header"]["status"] == 2

    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["rest"]}]}
    post = urllib.request.Request(f"http://{gateway.http}/v2/models/echo/infer", json.dumps(request).encode())
    with urllib.request.urlopen(post, timeout=10) as reply:
        assert json.loads(reply.read())["outputs"][0]["data"] == ["rest"]
    with urllib.request.urlopen(f"http://{gateway.http}/v2/health/ready", timeout=10) as reply:
        assert reply.status == 200

    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(gateway.grpc)
    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"oip"], dtype=object))
    assert client.infer("echo", [tensor]).as_numpy("text").tolist() == [b"oip"]
    served = {entry["address"] for entry in gateway.access() if entry["frontend"] == "http"}
    assert served <= {json.loads(_registry_value(stack, h))["http"] for h in hosts}


def _registry_value(stack, server: Server) -> str:
    store = stack[0]

    async def read() -> str:
        import aetcd

        async with aetcd.Client(host="127.0.0.1", port=store.client_port, timeout=2) as client:
            kv = await client.get(f"/aiges/services/echo/v1/providers/{server.address}".encode())
            return kv.value.decode()

    return asyncio.run(read())


def test_weights_follow_each_hosts_free_licences(stack):
    _, (small, large), gateway, _ = stack
    assert json.loads(_registry_value(stack, small))["route"] == "/v1/private/echo"
    # 10 free of the largest 20 (once the calls and sessions of the tests before have ended)
    wait_for(lambda: (gateway.server(small.address).weight, gateway.server(large.address).weight) == (128, 256), 30)


def test_hosts_are_added_and_drained_through_the_runtime_api_without_a_reload(stack):
    store, hosts, gateway, workdir = stack
    reloads = len(gateway.events("haproxy reloaded"))
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with Client(gateway.grpc) as client:
            while not stop.is_set():
                try:
                    client.once({"text": b"x"}, expect=["text"])
                except AigesCallError as exc:
                    failures.append(str(exc.code))
                except grpc.RpcError as exc:
                    refused = "error code 7" in (exc.details() or "")  # HTTP/2 REFUSED_STREAM: not processed
                    failures.append("refused stream" if refused else f"{exc.code().name}: {exc.details()}")

    caller = threading.Thread(target=load)
    caller.start()
    third = host(workdir, store.endpoint)
    try:
        wait_for(lambda: gateway.up(third.address), 20)
        third.signal(signal.SIGTERM)
        drained = wait_for(
            lambda: (state := gateway.server(third.address)) is not None and state.draining and state, 20
        )
        assert drained.status in ("DRAIN", "DOWN")
        assert third.wait(30) == 0
        wait_for(lambda: gateway.server(third.address).status in ("DOWN", "MAINT"), 20)
        wait_for(lambda: gateway.server(third.address) is None or gateway.server(third.address).in_maint, 20)
    finally:
        stop.set()
        caller.join(30)
        third.stop()
    # only refusals: a call HAProxy sent in the moment between the host's deregistration (after which
    # it refuses new calls, 10110, and, its calls done, closes its port: a refused HTTP/2 stream) and
    # the gateway's drain; never run, so a client may send it again
    assert set(failures) <= {"10110", "refused stream"} and len(failures) <= 3, failures[:3]
    assert len(gateway.events("haproxy reloaded")) == reloads
    assert {e["state"] for e in gateway.events("host routed") if e["address"] == third.address} >= {"ready", "drain"}


def test_a_new_service_gets_a_backend_by_a_reload_and_is_routed_by_its_name(stack):
    store, hosts, gateway, workdir = stack
    counting = host(workdir, store.endpoint, wrapper=WRAPPERS / "counting")
    try:
        wait_for(lambda: (s := gateway.server(counting.address, "counting.v1_grpc")) is not None and s.up, 30)
        assert gateway.events("haproxy reloaded")
        with Client(gateway.grpc, service="counting") as client:
            assert {peer(client.once({"text": b"c"}, expect=["text"]).handle) for _ in range(5)} == {counting.address}
        with Client(gateway.grpc) as client:  # naming none: the default service, still echo
            assert counting.address not in {
                peer(client.once({"text": b"e"}, expect=["text"]).handle) for _ in range(10)
            }
        body = json.dumps({"payload": {"text": {"text": base64.b64encode(b"counted").decode()}}}).encode()
        post = urllib.request.Request(f"http://{gateway.http}/v1/private/counting", body)
        with urllib.request.urlopen(post, timeout=10) as reply:
            assert peer(json.loads(reply.read())["header"]["sid"]) == counting.address
        with urllib.request.urlopen(f"http://{gateway.http}/v2/models/counting", timeout=10) as reply:
            assert json.loads(reply.read())["name"] == "counting"
        with Client(gateway.grpc) as client:  # the hosts there before kept their state through the reload
            assert {peer(client.once({"text": b"x"}, expect=["text"]).handle) for _ in range(20)} == {
                h.address for h in hosts
            }
    finally:
        counting.stop()


def test_the_gateways_health_and_stats_answer(stack):
    _, _, gateway, _ = stack
    with urllib.request.urlopen(f"http://{gateway.stats}/healthz", timeout=5) as reply:
        assert reply.status == 200
    with urllib.request.urlopen(f"http://{gateway.stats}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert 'haproxy_server_status{proxy="echo.v1_grpc",server="s1"' in metrics
    assert "haproxy_frontend_http_requests_total" in metrics
    with urllib.request.urlopen(f"http://{gateway.stats}/stats", timeout=5) as reply:
        assert b"echo.v1_grpc" in reply.read()


def test_tls_ends_at_the_gateway(stack, tmp_path):
    store, hosts, _, _ = stack
    authority = CertificateAuthority(tmp_path / "ca")
    issued = authority.server("gateway")
    secure = Gateway(tmp_path, store.endpoint, "--tls-cert", str(issued.cert), "--tls-key", str(issued.key))
    try:
        wait_for(lambda: secure.up(*(h.address for h in hosts)), 30)
        with Client(secure.grpc, tls=TlsOptions(ca=str(authority.path))) as client:
            assert client.once({"text": b"tls"}, expect=["text"])["text"] == b"tls"
        context = ssl.create_default_context(cafile=str(authority.path))
        body = json.dumps({"payload": {"text": {"text": base64.b64encode(b"tls").decode()}}}).encode()
        post = urllib.request.Request(f"https://{secure.http}/v1/private/echo", body)
        with urllib.request.urlopen(post, timeout=10, context=context) as reply:
            assert reply.status == 200
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to the TLS port: refused
            urllib.request.urlopen(f"http://{secure.http}/v2/health/ready", timeout=5)
    finally:
        assert secure.stop() == 0


def test_signed_calls_pass_through_the_gateway_and_are_checked_by_the_host(stack):
    store, _, gateway, workdir = stack
    keys = workdir / "keys-signed.toml"
    keys.write_text('[[app]]\napp_id = "a1"\napi_key = "key-1"\napi_secret = "secret-1"\n')
    registry = f'[registry]\nbackend = "etcd"\nendpoints = "{store.endpoint}"\nttl = 3\nservice = "signed"\n'
    auth = f'[auth]\nmode = "hmac"\nkeys = "{keys}"\n'
    signed = Server(workdir, ECHO, extra=registry + auth).start()
    try:
        wait_for(lambda: (s := gateway.server(signed.address, "signed.v1_grpc")) is not None and s.up, 30)
        with Client(gateway.grpc, service="signed", signing=SigningKey("key-1", "secret-1", "a1")) as client:
            result = client.once({"text": b"signed"}, expect=["text"])
        assert result["text"] == b"signed" and peer(result.handle) == signed.address
        with Client(gateway.grpc, service="signed") as client, pytest.raises(grpc.RpcError) as refused:
            client.once({"text": b"unsigned"}, expect=["text"])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        signed.stop()
