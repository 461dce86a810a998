"""Operations: health, reflection, metrics, the cmdserver, etcd registration, drain and logs,
against real server processes, a real etcd, grpcurl and promtool."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import aetcd
import grpc
import pytest
from conftest import free_port, health_status, require_tool, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.client import BalancedClient, EtcdProviders
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(server) -> dict:
    with grpc.insecure_channel(server.address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
    return json.loads(reply.body)


class HealthWatch:
    """Collects what grpc.health.v1.Health/Watch streams, in a thread."""

    def __init__(self, address: str, service: str = "") -> None:
        self.seen: list[int] = []
        self.channel = grpc.insecure_channel(address)
        self.call = health_pb2_grpc.HealthStub(self.channel).Watch(health_pb2.HealthCheckRequest(service=service))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for reply in self.call:
                self.seen.append(reply.status)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


def test_health_is_not_serving_until_every_worker_has_initialised(serve):
    server = serve("faulty", workers=2, wait=False, wrapper_config={"init_delay": "1.5"})
    wait_for(lambda: health_status(server.address) is not None)
    assert health_status(server.address) == NOT_SERVING
    assert health_status(server.address, "svcName") == NOT_SERVING
    assert health_status(server.address, "aiges.liveness") == SERVING
    watch = HealthWatch(server.address)
    server.wait_serving()
    assert health_status(server.address, "svcName") == SERVING
    wait_for(lambda: SERVING in watch.seen)
    assert watch.seen[0] == NOT_SERVING
    watch.close()


def test_health_drops_while_a_killed_worker_restarts(serve):
    server = serve("faulty", workers=2)
    watch = HealthWatch(server.address)
    wait_for(lambda: watch.seen == [SERVING])  # the watch is established before the worker dies
    pid = status(server)["worker_pids"][1]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: NOT_SERVING in watch.seen)
    wait_for(lambda: watch.seen[-1] == SERVING and status(server)["worker_restarts"] == 1)
    assert status(server)["worker_pids"][1] not in (pid, None)
    watch.close()


def test_a_hung_init_on_restart_is_killed_retried_and_fails_liveness(serve, tmp_path):
    """A worker whose wrapperInit hangs when it restarts: killed after ready_timeout_ms and tried
    again with back-off; after start_failures in a row liveness is NOT_SERVING (the orchestrator
    restarts the pod); once init works again, both come back."""
    hang = tmp_path / "hang"
    server = serve(
        "faulty", wrapper_config={"hang_while": str(hang)}, worker_extra="ready_timeout_ms = 1000\nstart_failures = 2"
    )
    hang.touch()
    with server.client() as client:
        client.once({"text": b"x"}, params={"mode": "exit"}, expect=["text"], check=False)
    wait_for(lambda: health_status(server.address, "aiges.liveness") == NOT_SERVING, timeout=60)
    assert health_status(server.address) == NOT_SERVING and not status(server)["live"]
    assert server.log().count("wrapperInit did not finish within ready_timeout_ms=1000") >= 2
    hang.unlink()
    released = time.monotonic()
    wait_for(lambda: health_status(server.address) == SERVING, timeout=60)
    print(f"SERVING again {time.monotonic() - released:.1f} s after init stopped hanging")
    assert health_status(server.address, "aiges.liveness") == SERVING and status(server)["live"]
    with server.client() as client:
        assert client.once({"text": b"back"}, expect=["text"])["text"] == b"back"


def test_a_hung_init_at_start_up_stops_the_server(serve):
    server = serve("faulty", wait=False, wrapper_config={"init_delay": "3600"}, worker_extra="ready_timeout_ms = 1000")
    assert server.wait(timeout=60) == 2
    assert "wrapperInit did not finish within ready_timeout_ms=1000" in server.log()


def test_min_ready_keeps_serving_with_one_worker_down(serve):
    server = serve("faulty", workers=2, min_ready=1)
    wait_for(lambda: status(server)["workers_ready"] == 2)  # SERVING came with the first one
    watch = HealthWatch(server.address)
    os.kill(status(server)["worker_pids"][0], signal.SIGKILL)
    wait_for(lambda: status(server)["worker_restarts"] == 1 and status(server)["workers_ready"] == 2)
    assert NOT_SERVING not in watch.seen[1:]
    watch.close()


def test_reflection_and_health_through_grpcurl(serve):
    grpcurl = require_tool("grpcurl")
    server = serve("faulty")
    listed = subprocess.run([grpcurl, "-plaintext", server.address, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"utils.XsfCall", "utils.ToolBox", "aiges.v1.Session", "grpc.health.v1.Health"} <= services
    described = subprocess.run(
        [grpcurl, "-plaintext", server.address, "describe", "utils.XsfCall"], capture_output=True, text=True, timeout=30
    )
    assert "rpc call ( .utils.ReqData ) returns ( .utils.ResData )" in described.stdout
    message = subprocess.run(
        [grpcurl, "-plaintext", server.address, "describe", "protocol.LoaderInput"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "repeated .protocol.Payload pl = 7;" in message.stdout
    checked = subprocess.run(
        [grpcurl, "-plaintext", "-d", '{"service": "svcName"}', server.address, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(checked.stdout) == {"status": "SERVING"}


def test_metrics_pass_promtool_and_count_requests(serve):
    promtool = require_tool("promtool")
    port = free_port()
    server = serve("faulty", metrics_port=port)
    with server.client() as client:
        for _ in range(3):
            client.once({"text": b"x"}, expect=["text"])
        client.once({"text": b"x"}, params={"mode": "error"}, expect=["text"], check=False)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = text.splitlines()
    assert 'aiges_requests_total{code="0",front="xsf",op="AIIn",service="faulty"} 3.0' in lines
    assert 'aiges_requests_total{code="10909",front="xsf",op="AIIn",service="faulty"} 1.0' in lines
    assert 'aiges_call_leg_seconds_count{kind="once",leg="exec"} 4.0' in lines
    assert "aiges_licences 100.0" in lines and "aiges_workers_up 1.0" in lines
    assert "aiges_licences_used 0.0" in lines and "aiges_serving 1.0" in lines
    assert "aiges_worker_restarts_total 0.0" in lines
    assert not any(line.startswith("aiges_gpu_") for line in lines)


def test_cmdserver_answers_health_and_status(serve):
    server = serve("faulty", workers=2)
    with grpc.insecure_channel(server.address) as channel:
        stub = ToolBoxStub(channel)
        assert stub.cmdserver(Request(query='{"cmd": "health"}')).body == "health staus: SERVING"
        assert "unknown cmd" in stub.cmdserver(Request(query='{"cmd": "bogus"}')).body
    state = status(server)
    assert state["workers"] == 2 and state["workers_ready"] == 2 and state["licences_free"] == 100


def etcd_get(endpoint: str, prefix: str) -> dict[str, dict]:
    async def read():
        host, port = endpoint.split(":")
        async with aetcd.Client(host=host, port=int(port)) as client:
            return {kv.key.decode(): json.loads(kv.value) for kv in await client.get_prefix(prefix.encode())}

    return asyncio.run(read())


def registered(etcd: str, **options):
    lines = [f'endpoints = "{etcd}"', f"ttl = {options.pop('ttl', 3)}", 'backend = "etcd"']
    return "[registry]\n" + "\n".join(lines) + "\n"


PREFIX = "/aiges/services/streamer/v1/providers/"


def test_etcd_registration_refresh_and_deregistration(serve, etcd):
    server = serve("streamer", extra=registered(etcd), licences=10)
    key = PREFIX + server.address
    entry = wait_for(lambda: etcd_get(etcd, PREFIX).get(key))
    assert entry["address"] == server.address and entry["health"] == "SERVING"
    assert entry["service"] == "streamer" and entry["version"] == "v1"
    assert entry["licences_total"] == 10 and entry["licences_free"] == 10 and entry["labels"] == {}
    assert entry["workers"] == 1 and entry["gpus"] == []
    with server.client() as client:
        session = client.session(expect=["out"])
        wait_for(lambda: etcd_get(etcd, PREFIX)[key]["licences_free"] == 9, timeout=5)
        session.close()
    wait_for(lambda: etcd_get(etcd, PREFIX)[key]["licences_free"] == 10, timeout=5)
    server.signal(signal.SIGTERM)
    wait_for(lambda: key not in etcd_get(etcd, PREFIX), timeout=5)
    assert server.wait() == 0


def etcd_revision(endpoint: str) -> int:
    async def read():
        host, port = endpoint.split(":")
        async with aetcd.Client(host=host, port=int(port)) as client:
            return (await client.get_prefix(b"/")).header.revision

    return asyncio.run(read())


def test_an_idle_server_writes_nothing_to_etcd(serve, etcd):
    """The value holds only what clients balance on; the lease lives on keep-alives. Free licences
    move in steps of a twentieth of the total (5 of 100)."""
    server = serve("streamer", extra=registered(etcd, ttl=2))
    key = PREFIX + server.address
    wait_for(lambda: key in etcd_get(etcd, PREFIX))
    first = etcd_revision(etcd)
    time.sleep(5)  # two and a half lease TTLs of idling: what is measured is that nothing happens
    idle = etcd_revision(etcd) - first
    print(f"etcd revisions in 5 s of an idle server: {idle}")
    assert idle == 0
    with server.client() as client:
        sessions = [client.session(expect=["out"]) for _ in range(4)]
        assert etcd_get(etcd, PREFIX)[key]["licences_free"] == 100  # 96 free: still the 100 step
        sessions.append(client.session(expect=["out"]))
        wait_for(lambda: etcd_get(etcd, PREFIX)[key]["licences_free"] == 95, timeout=5)
        for session in sessions:
            session.close()
    wait_for(lambda: etcd_get(etcd, PREFIX)[key]["licences_free"] == 100, timeout=5)


def test_wrapper_labels_reach_the_registry_value(serve, etcd):
    pytest.importorskip("python_wrapper")
    serve("reporter", extra=registered(etcd), wrapper_config={"model": "m9"})
    entry = wait_for(lambda: next(iter(etcd_get(etcd, "/aiges/services/reporter/").values()), None))
    assert entry["labels"] == {"model": "m9"}


def test_the_lease_expires_after_a_killed_server(serve, etcd):
    server = serve("streamer", extra=registered(etcd, ttl=2))
    key = PREFIX + server.address
    wait_for(lambda: key in etcd_get(etcd, PREFIX))
    time.sleep(3)
    assert key in etcd_get(etcd, PREFIX), "the lease must be kept alive while the server runs"
    server.process.kill()
    gone_after = time.monotonic()
    wait_for(lambda: key not in etcd_get(etcd, PREFIX), timeout=10, interval=0.2)
    assert time.monotonic() - gone_after <= 6


def test_a_balanced_client_fails_over_between_two_servers(serve, etcd):
    first = serve("streamer", extra=registered(etcd), licences=10)  # 10: free licences move in steps of 1
    second = serve("streamer", extra=registered(etcd), licences=10)
    providers = EtcdProviders(etcd, service="streamer", version="v1")
    wait_for(lambda: len(providers.snapshot()) == 2)
    with first.client() as client:
        held = client.session(expect=["out"])
        wait_for(lambda: providers.snapshot()[first.address]["licences_free"] == 9)
        assert providers.best() == second.address
        held.close()
    with BalancedClient(providers) as balanced:
        assert balanced.once({"in": b"x"}, expect=["out"])["out"] == b"once"
        second.process.kill()
        # a call sent on the dying connection may have run: retried because it is idempotent
        for _ in range(5):
            assert balanced.once({"in": b"x"}, expect=["out"], idempotent=True)["out"] == b"once"
        wait_for(lambda: set(providers.snapshot()) == {first.address}, timeout=10, interval=0.2)
    providers.close()


def test_etcd_down_never_disturbs_serving(serve):
    server = serve("faulty", extra=registered(f"127.0.0.1:{free_port()}"))
    with server.client() as client:
        assert client.once({"text": b"x"}, expect=["text"])["text"] == b"x"
    assert "etcd registration lost, retrying" in server.log()
    assert health_status(server.address) == SERVING


def test_drain_refuses_new_calls_and_lets_running_sessions_finish(serve):
    server = serve("streamer", drain_timeout_ms=10000)
    with server.client() as client:
        session = client.session(expect=["out"])
        session.write({"in": b"before"})
        server.signal(signal.SIGTERM)
        wait_for(lambda: health_status(server.address) == NOT_SERVING)
        assert health_status(server.address, "aiges.liveness") == SERVING
        code, error, _, output = client.call("AIIn", first_frame(), params={"SeqNo": "1"})
        assert code == 10110 and output.code == 10110 and "draining" in error
        session.write({"in": b"during"}, last=True)
        assert [i.data for b in session.results() for i in b.items] == [b"before", b"during"]
    assert server.wait(15) == 0
    log = server.log()
    assert log.index('"draining"') < log.index('"stopped"')


def first_frame():
    from aiges.client.values import loader_input
    from aiges.protocol.v2_pb2 import LoaderInput

    return loader_input(state=LoaderInput.ONCE, inputs={"in": b"x"}, expect=["out"], status=3)


def test_drain_gives_up_after_its_timeout(serve):
    server = serve("streamer", drain_timeout_ms=500)
    with server.client() as client:
        client.session(expect=["out"])
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
    assert 0.4 < time.monotonic() - started < 8
    assert '"drain timeout"' in server.log()


def test_logs_are_json_with_the_worker_output_tagged(serve):
    server = serve("faulty", workers=1, log_level="debug")
    with server.client() as client:
        client.once({"text": b"x"}, params={"mode": "print"}, expect=["text"])
        client.once({"text": b"x"}, params={"mode": "error"}, expect=["text"], check=False)
    server.stop()
    events = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert events and all({"event", "level", "timestamp"} <= set(e) for e in events)
    printed = [e for e in events if e.get("line") == "hello from the wrapper's stdout"]
    assert printed and printed[0]["worker"] == 0 and printed[0]["stream"] == "stdout"
    warned = [e for e in events if "a warning from the wrapper's logger" in e.get("line", "")]
    assert warned and warned[0]["level"] == "warning" and warned[0]["stream"] == "stderr"
    calls = [e for e in events if e["event"] == "call"]
    assert calls and {"sid", "op", "worker", "code", "ms"} <= set(calls[0])
    failed = [e for e in events if e["event"] == "call failed"]
    assert failed and failed[0]["code"] == 10909 and {"sid", "op", "ms"} <= set(failed[0])
