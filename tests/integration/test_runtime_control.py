"""Runtime control against real servers: AILBType resizes the licences (registry value and
/metrics follow), AILoad / AIUnLoad personalised resources change a hot-word recogniser's
transcripts on every worker and after a worker restart (class and function style), and bad
input gets its code while nothing changes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
from conftest import free_port, health_status, wait_for
from grpc_health.v1 import health_pb2
from test_operations import etcd_get, registered

from aiges.client import AigesCallError, Input
from aiges.protocol.v2_pb2 import LoaderInput
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

HOT_WORDS = b"a gees=aiges\nsir ving=serving\n"
HEARD = b"a gees is sir ving"
EXPECT = ["transcript", "who"]


def status(server) -> dict:
    with grpc.insecure_channel(server.address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
    return json.loads(reply.body)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def code_of(call) -> int:
    try:
        call()
    except AigesCallError as exc:
        return exc.code
    return 0


def transcript(client, res_ids=(), **options) -> str:
    return client.once({"audio": HEARD}, expect=EXPECT, res_ids=res_ids, **options)["transcript"].decode()


def op_code(client, op: str, params: dict[str, str], message: LoaderInput | None = None) -> int:
    code, _, _, output = client.call(op, message, params=params)
    return code or (output.code if output is not None else 0)


def on_both_workers(client, res_ids) -> list:
    """Eight calls at once (each takes 100 ms), so that both workers answer some."""
    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(client.once, {"audio": HEARD}, expect=EXPECT, res_ids=res_ids) for _ in range(8)]
        return [call.result() for call in calls]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aiges", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_ailbtype_resizes_the_licences_without_cutting_a_session(serve, etcd):
    metrics_port = free_port()
    server = serve("hotwords", licences=4, metrics_port=metrics_port, extra=registered(etcd))
    key = f"/aiges/services/hotwords/v1/providers/{server.address}"
    with server.client() as client:
        for bad in ({"authzNo": "many"}, {"authzNo": "0"}, {}, {"authzNo": "3", "timeout": "soon"}):
            assert op_code(client, "AILBType", bad) == 10107, bad
        assert status(server)["licences_total"] == 4

        client.resize_licences(6, lb_type="hermes")
        assert status(server)["licences_total"] == 6 and metric(metrics_port, "aiges_licences") == 6
        entry = wait_for(lambda: (e := etcd_get(etcd, key).get(key)) and e["licences_total"] == 6 and e, timeout=5)
        assert entry["type"] == "hermes"

        sessions = [client.session(expect=EXPECT) for _ in range(3)]
        shrunk: list[int] = []
        shrink = threading.Thread(
            target=lambda: shrunk.append(code_of(lambda: client.resize_licences(2, timeout_ms=20000)))
        )
        shrink.start()
        wait_for(lambda: status(server)["licences_total"] == 2)
        assert code_of(lambda: transcript(client)) == 10110  # admits nothing while 3 are in use
        assert shrink.is_alive()
        sessions[0].close()
        shrink.join(20)
        assert shrunk == [0] and metric(metrics_port, "aiges_licences") == 2
        for session in sessions[1:]:  # the running sessions were never cut
            session.write({"audio": HEARD}, last=True)
            [batch] = list(session.results())
            assert batch["transcript"] == HEARD
        assert wait_for(lambda: status(server)["licences_used"] == 0)

        late = [client.session(expect=EXPECT) for _ in range(2)]
        assert code_of(lambda: client.resize_licences(1, timeout_ms=300)) == 10104
        assert status(server)["licences_total"] == 2  # a shrink that did not fit changes nothing
        for session in late:
            session.close()


def test_hot_words_reach_every_worker_and_a_restarted_one(serve, tmp_path):
    metrics_port = free_port()
    server = serve(
        "hotwords",
        workers=2,
        metrics_port=metrics_port,
        wrapper_config={"delay_ms": "100"},
        extra="[resources]\nmax_count = 2\nmax_mb = 1\n",
    )
    words = tmp_path / "hotwords.txt"
    words.write_bytes(HOT_WORDS)
    with server.client() as client:
        assert transcript(client) == HEARD.decode()
        assert code_of(lambda: transcript(client, res_ids=[7])) == 10120  # not loaded yet

        loaded = cli("call", "--addr", server.address, "--load", "7", "--input", f"words=@{words}")
        assert loaded.returncode == 0, loaded.stderr
        assert metric(metrics_port, "aiges_resources_loaded") == 1
        answers = on_both_workers(client, [7])
        assert {a["transcript"] for a in answers} == {b"aiges is serving"}
        assert len({a["who"] for a in answers}) == 2  # both workers had it
        assert transcript(client) == HEARD.decode()  # a call naming no resource is as before
        with client.session(expect=EXPECT, res_ids=[7]) as session:
            session.write({"audio": b"a gees"})
            session.write({"audio": b"is sir ving"}, last=True)
            assert [batch["transcript"] for batch in session.results()] == [b"aiges is serving"]

        pid = status(server)["worker_pids"][0]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (pids := status(server)["worker_pids"]) and pids[0] not in (pid, None), timeout=30)
        answers = on_both_workers(client, [7])
        assert {a["transcript"] for a in answers} == {b"aiges is serving"}
        assert f"@{status(server)['worker_pids'][0]}".encode() in {a["who"] for a in answers}  # the restarted one

        # bad input gets its code, and nothing changes
        big = {"words": Input(b"x" * (1 << 20), 0)}
        assert code_of(lambda: client.load_resource(8, big)) == 10121
        assert code_of(lambda: client.load_resource(8, {"words": b"refuse"})) == 10903
        assert op_code(client, "AILoad", {"resId": "0"}) == 10107
        assert op_code(client, "AILoad", {"resId": "8"}) == 10009  # no data
        assert code_of(lambda: client.unload_resource(9)) == 10120
        assert code_of(lambda: transcript(client, params={"aiges.res_ids": "7,x"})) == 10107
        client.load_resource(8, {"words": b"is=was"})
        assert code_of(lambda: client.load_resource(9, {"words": b"one too many"})) == 10121
        assert transcript(client, res_ids=[7]) == "aiges is serving"
        assert status(server)["resources"] == 2

        unloaded = cli("call", "--addr", server.address, "--unload", "7")
        assert unloaded.returncode == 0, unloaded.stderr
        assert code_of(lambda: transcript(client, res_ids=[7])) == 10120
        assert transcript(client, res_ids=[8]) == "a gees was sir ving"
        assert metric(metrics_port, "aiges_resources_loaded") == 1
        refused = cli("call", "--addr", server.address, "--unload", "7")
        assert refused.returncode == 1 and "10120" in refused.stderr


def test_function_style_wrappers_get_every_resource_as_psr_ids(serve):
    server = serve("hotwords_functions")
    with server.client() as client:
        client.load_resource(1, {"words": HOT_WORDS})
        client.load_resource(2, {"words": b"aiges=AIGES"})
        result = client.once({"audio": HEARD}, expect=["transcript"], res_ids=[1, 2])
        assert result["transcript"] == b"AIGES is serving"
        with client.session(expect=["transcript"], res_ids=[1]) as session:
            session.write({"audio": HEARD}, last=True)
            assert [b["transcript"] for b in session.results()] == [b"aiges is serving"]
        assert code_of(lambda: client.load_resource(3, {"words": b"refuse"})) == 10903


def test_a_wrapper_without_resources_answers_10122(serve):
    server = serve("streamer")  # class style: WrapperBase's wrapperLoadRes accepts all (returns 0)
    with server.client() as client:
        client.load_resource(1, {"words": b"anything"})
    server = serve("functional")  # function style without wrapperLoadRes
    with server.client() as client:
        assert code_of(lambda: client.load_resource(1, {"words": b"anything"})) == 10122
        assert code_of(lambda: client.once({"a": b"x"}, expect=["a"], res_ids=[1])) == 10120


def test_resources_on_the_native_stream_and_http(serve):
    http_port = free_port()
    server = serve("hotwords", extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n')
    with server.client() as client:
        client.load_resource(5, {"words": HOT_WORDS})
        with client.session(expect=EXPECT, transport="stream", res_ids=[5]) as session:
            session.write({"audio": HEARD}, last=True)
            assert [b["transcript"] for b in session.results()] == [b"aiges is serving"]
    for res_ids, code, heard in (("5", 0, "aiges is serving"), ("6", 10120, None)):
        body = {
            "parameter": {"hotwords": {"aiges.res_ids": res_ids, "transcript": {"encoding": "utf8"}, "who": {}}},
            "payload": {"audio": {"text": base64.b64encode(HEARD).decode()}},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1/private/hotwords",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read())
            assert error.code == 404, answer
        assert answer["header"]["code"] == code, answer
        if heard is not None:
            assert answer["payload"]["transcript"]["text"] == heard, answer


# -- reload -----------------------------------------------------------------------------------------


def serving_throughout(server, stop: threading.Event, seen: list[int | None]) -> None:
    """Poll the server's health until ``stop``; every answer that is not SERVING goes to ``seen``."""
    while not stop.is_set():
        answer = health_status(server.address, timeout=2)
        if answer != health_pb2.HealthCheckResponse.SERVING:
            seen.append(answer)
        stop.wait(0.02)


def test_a_reload_under_load_fails_no_call_and_old_sessions_finish_on_the_old_workers(serve, tmp_path):
    server = serve("hotwords", workers=2, drain_timeout_ms=20000, wrapper_config={"mark": "v1", "delay_ms": "5"})
    report, calls = tmp_path / "xtest.json", tmp_path / "calls.jsonl"
    with server.client() as client:
        client.load_resource(7, {"words": HOT_WORDS})
        before = [client.session(expect=EXPECT, res_ids=[7]) for _ in range(2)]
        for session in before:
            session.write({"audio": b"a gees"})
        old_pids = set(status(server)["worker_pids"])
        xtest = ["xtest", "--addr", server.address, "--input", "audio=a gees", "--expect", "transcript"]
        xtest += [
            "--expect",
            "who",
            "--concurrency",
            "4",
            "--duration",
            "8",
            "--json",
            str(report),
            "--calls",
            str(calls),
        ]
        load = subprocess.Popen(
            [sys.executable, "-m", "aiges", *xtest], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        stop = threading.Event()
        not_serving: list[int | None] = []
        watcher = threading.Thread(target=serving_throughout, args=(server, stop, not_serving))
        watcher.start()
        try:
            wait_for(lambda: calls.exists() and len(calls.read_text().splitlines()) > 20, timeout=20)  # load runs
            server.config_path.write_text(server.config_path.read_text().replace('"mark" = "v1"', '"mark" = "v2"'))
            reloaded = cli("reload", "--addr", server.address, "--json")
            assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
            answer = json.loads(reloaded.stdout)
            assert answer["ok"] and answer["generation"] == 2 and answer["retiring"] == 2
            assert transcript_and_who(client)[1].startswith(b"v2@")  # new calls: the new workers
            new_pids = set(status(server)["worker_pids"])
            assert not new_pids & old_pids
            for session in before:  # sessions opened before finish on their old worker
                session.write({"audio": b"is sir ving"}, last=True)
                [batch] = list(session.results())
                assert batch["transcript"] == b"aiges is serving"
                mark, pid = batch["who"].decode().split("@")
                assert mark == "v1" and int(pid) in old_pids
            # the old workers stop once their sessions are done
            wait_for(lambda: status(server)["reload"]["retiring_workers"] == 0, timeout=20)
            output, _ = load.communicate(timeout=60)
        finally:
            stop.set()
            watcher.join()
            if load.poll() is None:
                load.kill()
        assert load.returncode == 0, output
        figures = json.loads(report.read_text())
        assert figures["errors"] == 0 and figures["requests"] > 20, figures
        assert not_serving == []
        assert not any(alive(pid) for pid in old_pids)

        # SIGHUP does the same; a new wrapper that fails its init leaves the serving one
        server.config_path.write_text(server.config_path.read_text().replace('"mark" = "v2"', '"mark" = "v3"'))
        server.signal(signal.SIGHUP)
        wait_for(lambda: status(server)["reload"]["generation"] == 3, timeout=30)
        assert transcript_and_who(client)[1].startswith(b"v3@")
        server.config_path.write_text(server.config_path.read_text() + '"fail_init" = "1"\n')
        failed = cli("reload", "--addr", server.address)
        assert failed.returncode == 1 and "the old workers serve on" in failed.stderr, failed.stderr
        assert "the model is missing" in failed.stderr, failed.stderr
        state = status(server)["reload"]
        assert state["generation"] == 3 and not state["last"]["ok"] and state["counts"] == {"ok": 2, "failed": 1}
        assert transcript_and_who(client, res_ids=[7]) == ("aiges is serving", transcript_and_who(client)[1])
        assert transcript_and_who(client)[1].startswith(b"v3@")


def transcript_and_who(client, res_ids=()) -> tuple[str, bytes]:
    result = client.once({"audio": HEARD}, expect=EXPECT, res_ids=res_ids)
    return result["transcript"].decode(), result["who"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
