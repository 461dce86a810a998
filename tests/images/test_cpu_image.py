"""The CPU base image (docker/cpu/Dockerfile), built on a stand-in of python:3.11.7-slim-bookworm
and run with podman, checked from outside the container.

The containers share the host's network (the only mode measured to work in this sandbox), so each
gets a config with free ports mounted over /home/aiges/aiges.toml, as a user's image would ship one.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiges.client import Client

from .imagelib import HERE, REPORT, Container, free_ports, mib, service_config, wait_for, write_config

pytestmark = pytest.mark.timeout(900)

DRAIN_MS = 10000


@pytest.fixture(scope="module")
def served(engine, cpu_image, tmp_path_factory):
    """The image as shipped (its echo demo), with its ports moved: the start time is measured here."""
    port, metrics, http = free_ports(3)
    config = write_config(tmp_path_factory.mktemp("cpu"), service_config(port, metrics, http))
    container = engine.start(
        cpu_image, name_hint="cpu", address=f"127.0.0.1:{port}", options=("-v", f"{config}:/home/aiges/aiges.toml:ro")
    )
    container.ports = {"grpc": port, "metrics": metrics, "http": http}
    try:
        REPORT["images"][cpu_image]["serving_s"] = container.wait_serving()
        yield container
    finally:
        container.remove()


def hardened_options(config) -> tuple[str, ...]:
    """Read-only root filesystem, a tmpfs at /tmp only (podman's default extra tmpfs mounts off),
    the tests' wrapper mounted read-only."""
    return (
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,size=64m,mode=1777",
        "-v",
        f"{HERE / 'wrapper'}:/srv/wrapper:ro",
        "-v",
        f"{config}:/home/aiges/aiges.toml:ro",
    )


@pytest.fixture(scope="module")
def hardened(engine, cpu_image, tmp_path_factory):
    """The image serving the tests' wrapper (slow calls, orphaned grandchildren) read-only."""
    port, metrics = free_ports(2)
    text = service_config(port, metrics, None, wrapper="/srv/wrapper", drain_ms=DRAIN_MS, workers=1, gpus="")
    config = write_config(tmp_path_factory.mktemp("hardened"), text)
    container = engine.start(
        cpu_image, name_hint="hardened", address=f"127.0.0.1:{port}", options=hardened_options(config)
    )
    container.ports = {"grpc": port, "metrics": metrics}
    try:
        container.wait_serving()
        yield container
    finally:
        container.remove()


def metrics_of(container: Container) -> dict[tuple[str, tuple], float]:
    url = f"http://127.0.0.1:{container.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def xsf_calls(container: Container) -> float:
    return sum(
        value
        for (name, labels), value in metrics_of(container).items()
        if name == "aiges_requests_total" and ("front", "xsf") in labels and ("code", "0") in labels
    )


def test_it_becomes_serving_through_its_own_healthcheck(engine, cpu_image, served):
    healthcheck = engine.image(cpu_image)["Healthcheck"]["Test"]
    assert healthcheck[:3] == ["CMD", "aiges", "health"], healthcheck
    seconds = served.wait_healthy()
    assert served.state()["Health"]["Status"] == "healthy"
    REPORT["images"][cpu_image]["healthy_s"] = seconds


def test_it_answers_a_call_over_xsf(served):
    with Client(served.address) as client:
        result = client.once({"text": b"hello from outside"}, params={"prefix": "> "}, expect=["text"])
    assert result["text"] == b"> hello from outside"


def test_it_answers_a_call_over_http(served):
    body = json.dumps({"payload": {"text": {"text": base64.b64encode(b"over http").decode()}}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.ports['http']}/v1/private/echo",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        answer = json.loads(reply.read())
    assert answer["header"]["code"] == 0, answer
    assert answer["payload"]["text"]["text"] == "over http"


def test_it_serves_metrics_that_count_its_calls(served):
    before = xsf_calls(served)
    with Client(served.address) as client:
        client.once({"text": b"counted"}, expect=["text"])
    assert xsf_calls(served) == before + 1
    samples = metrics_of(served)
    assert samples[("aiges_serving", ())] == 1
    assert samples[("aiges_workers_up", ())] == 1


def test_every_process_runs_as_uid_1000(engine, cpu_image, served):
    assert engine.image(cpu_image)["User"] == "1000:1000"
    processes = served.processes()
    assert len(processes) >= 3, processes  # tini, aiges, a worker
    assert {p["user"] for p in processes} == {"aiges"}, processes
    uid = served.exec("id", "-u", check=True).stdout.strip()
    assert uid == "1000"


def test_the_image_is_small_and_holds_no_compilers_or_caches(engine, cpu_image):
    entry = REPORT["images"][cpu_image]
    added = entry["size"] - entry["base_size"]
    # What the Dockerfile's steps could leave behind (the base's own files aside).
    look = (
        "for tool in gcc cc c++ g++ clang make; do command -v $tool; done;"
        " ls -d /src /root/.cache /home/aiges/.cache /tmp/* 2>/dev/null;"
        " find /var/lib/apt/lists /var/cache/apt -type f ! -name lock 2>/dev/null;"
        " find /opt/aiges /home /root -name '*.whl' -o -name '*.tar.gz' -o -type d -name tests 2>/dev/null;"
        " true"
    )
    leftovers = engine.podman("run", "--rm", "--user", "0", "--entrypoint", "sh", cpu_image, "-c", look).stdout
    assert leftovers.strip() == "", leftovers
    biggest = engine.podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        cpu_image,
        "-c",
        "du -sk /opt/aiges/lib/python3*/site-packages/* | sort -rn | head -8",
    ).stdout
    venv = engine.podman("run", "--rm", "--entrypoint", "du", cpu_image, "-sk", "/opt/aiges").stdout.split()[0]
    entry["made_of"] = [
        f"base {mib(entry['base_size'])} (stand-in); added {mib(added)}: tini (1.8 MB), the user, and"
        f" /opt/aiges, the virtual environment ({int(venv) // 1024} MiB on disk), whose largest"
        " packages are:"
    ]
    entry["made_of"] += [
        f"  {int(kib) // 1024:>3} MiB {path.rsplit('/', 1)[-1]}"
        for kib, path in (line.split() for line in biggest.splitlines())
    ]
    assert added < 150 << 20, f"the image adds {mib(added)} to its base"


def test_it_serves_with_a_read_only_root_filesystem(hardened):
    root = hardened.exec("sh", "-c", "touch /home/aiges/x /x")
    assert root.returncode != 0 and "Read-only file system" in root.stderr, root
    assert hardened.exec("touch", "/tmp/scratch").returncode == 0
    with Client(hardened.address) as client:
        assert client.once({"text": b"read-only"}, expect=["text"])["text"] == b"read-only"


def zombies(container: Container) -> list[dict[str, str]]:
    return [p for p in container.processes() if p["state"].startswith("Z")]


def orphans(container: Container, count: int) -> list[str]:
    """``count`` calls that each leave an exited grandchild behind; their pids in the container."""
    assert container.address, "the container's gRPC address"
    with Client(container.address) as client:
        return [
            client.once({"text": b"x"}, params={"orphan": "1"}, expect=["text", "orphan"])["orphan"].decode()
            for _ in range(count)
        ]


def test_pid_1_is_tini_and_reaps_orphaned_processes(hardened):
    processes = {p["pid"]: p for p in hardened.processes()}
    assert processes["1"]["comm"] == "tini", processes
    pids = orphans(hardened, 3)
    wait_for(
        lambda: not zombies(hardened) and not set(pids) & {p["pid"] for p in hardened.processes()},
        timeout=15,
        what=f"orphans {pids} reaped",
    )


def test_without_an_init_the_same_orphans_stay_zombies(engine, cpu_image, tmp_path_factory):
    """The check above can fail: with aiges itself as PID 1 (no tini), the orphans stay zombies."""
    port, metrics = free_ports(2)
    text = service_config(port, metrics, None, wrapper="/srv/wrapper", workers=1, gpus="")
    config = write_config(tmp_path_factory.mktemp("noinit"), text)
    container = engine.start(
        cpu_image,
        "serve",
        "-c",
        "/home/aiges/aiges.toml",
        name_hint="noinit",
        address=f"127.0.0.1:{port}",
        options=("--entrypoint", "aiges", *hardened_options(config)),
    )
    try:
        container.wait_serving()
        assert {p["pid"]: p["comm"] for p in container.processes()}["1"] == "aiges"
        pids = orphans(container, 2)
        stuck = wait_for(
            lambda: {p["pid"] for p in zombies(container)} >= set(pids) and zombies(container),
            timeout=15,
            what=f"orphans {pids} left as zombies",
        )
        assert all(p["ppid"] == "1" for p in stuck), stuck
    finally:
        container.remove()


def test_podman_stop_drains_the_call_in_flight_and_exits_0(hardened):
    results: list = []

    def slow_call() -> None:
        with Client(hardened.address) as client:
            results.append(
                client.once({"text": b"in flight"}, params={"sleep_ms": "3000"}, expect=["text"], check=False)
            )
        results.append(time.monotonic())

    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_for(lambda: metrics_of(hardened)[("aiges_inflight_calls", ())] >= 1, timeout=15, what="call in flight")
    sent = time.monotonic()
    code, seconds = hardened.stop(timeout_s=DRAIN_MS // 1000 + 20)
    caller.join(30)
    assert results and results[0].code == 0 and results[0]["text"] == b"in flight", results
    assert results[1] > sent, "the call ended before the stop began: nothing was in flight"
    assert code == 0, hardened.logs()
    assert seconds < DRAIN_MS / 1000, f"stopped after {seconds:.1f}s, past the {DRAIN_MS} ms drain"
    logs = hardened.logs()
    assert '"draining"' in logs and '"stopped"' in logs, logs
    REPORT.setdefault("runs", {})["podman stop with a 3 s call in flight"] = {
        "exit code": code,
        "stop took": f"{time.monotonic() - sent:.1f}s",
        "call": "answered",
    }
