"""docker/compose.yaml for real, with podman-compose: aiges registers in the stack's etcd and the
stack's Prometheus scrapes it.

No registry can be reached here, so tests/images/compose/override.yaml swaps, for the test only,
the etcd and Prometheus images for ones built locally from Debian's etcd-server and prometheus
packages, and aiges for the image the tests have just built. The stack runs on its own bridge
network, as compose makes it (service names resolve through podman's dnsname plugin), with its
ports published on free host ports. podman 4.3 cannot wait for a service to be healthy, so
podman-compose starts aiges at once rather than after etcd is healthy (it says so); aiges retries
etcd until it answers, which is part of what is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from aiges.client import Client

from . import standin
from .imagelib import HERE, ROOT, free_ports, run, unavailable, wait_for

pytestmark = pytest.mark.timeout(900)

COMPOSE = ROOT / "docker" / "compose.yaml"
OVERRIDE = HERE / "compose" / "override.yaml"
PROVIDER = "/aiges/services/echo/v1/providers/aiges:5090"


def podman_compose() -> str:
    found = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or shutil.which("podman-compose")
    if found is None:
        unavailable("podman-compose is not installed (pip install -e '.[images]'; make image-test does)")
    return found


class Stack:
    def __init__(self, engine, project: str, env: dict[str, str]) -> None:
        self.engine, self.project, self.env = engine, project, env
        self.command = [podman_compose(), "--in-pod", "false", "-p", project, "-f", str(COMPOSE), "-f", str(OVERRIDE)]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run([*self.command, *args], timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def etcd_get(self) -> dict[str, dict]:
        result = self.engine.podman(
            "exec", self.container("etcd"), "etcdctl", "get", "--prefix", "/aiges/services/", check=False
        )
        lines = result.stdout.splitlines() if result.returncode == 0 else []
        return {key: json.loads(value) for key, value in zip(lines[::2], lines[1::2], strict=False)}

    def targets(self) -> list[dict]:
        url = f"http://127.0.0.1:{self.env['PROMETHEUS_PORT']}/api/v1/targets"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return json.loads(reply.read())["data"]["activeTargets"]
        except OSError:
            return []


@pytest.fixture(scope="module")
def stack(engine, cpu_image):
    podman_compose()
    backend = engine.podman("info", "--format", "{{.Host.NetworkBackend}}").stdout.strip()
    if backend == "cni" and not Path("/usr/lib/cni/dnsname").exists():
        unavailable(
            "the compose network needs CNI's dnsname plugin for service names "
            "(Debian golang-github-containernetworking-plugin-dnsname; .ci/run installs it)"
        )
    standin.ensure_noted(engine, standin.ETCD, standin.PROMETHEUS)
    grpc, metrics, http, prometheus = free_ports(4)
    env = dict(
        os.environ,
        AIGES_TEST_ETCD_IMAGE=standin.ETCD,
        AIGES_TEST_PROMETHEUS_IMAGE=standin.PROMETHEUS,
        AIGES_TEST_AIGES_IMAGE=cpu_image,
        AIGES_GRPC_PORT=str(grpc),
        AIGES_METRICS_PORT=str(metrics),
        AIGES_HTTP_PORT=str(http),
        PROMETHEUS_PORT=str(prometheus),
    )
    stack = Stack(engine, f"aiges-test-{uuid.uuid4().hex[:8]}", env)
    try:
        stack.compose("up", "-d", "--no-build")
        yield stack
    finally:
        stack.compose("down", "-v", timeout=180)


def test_aiges_registers_in_the_stacks_etcd(stack):
    entries = wait_for(stack.etcd_get, timeout=90, interval=0.5, what=f"{PROVIDER} in etcd")
    assert list(entries) == [PROVIDER], entries
    entry = entries[PROVIDER]
    assert entry["address"] == "aiges:5090" and entry["health"] == "SERVING" and entry["workers_ready"] == 1, entry
    assert stack.engine.podman("healthcheck", "run", stack.container("aiges"), check=False).returncode == 0


def test_prometheus_scrapes_aiges(stack):
    def aiges_up() -> dict | None:
        return next((t for t in stack.targets() if t["labels"].get("job") == "aiges" and t["health"] == "up"), None)

    target = wait_for(aiges_up, timeout=90, interval=0.5, what="Prometheus target aiges up")
    assert target["scrapeUrl"] == "http://aiges:9090/metrics" and target["lastError"] == "", target
    query = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/api/v1/query?query=aiges_serving"
    series = wait_for(
        lambda: json.loads(urllib.request.urlopen(query, timeout=5).read())["data"]["result"],
        timeout=60,
        interval=0.5,
        what="aiges_serving scraped into Prometheus",
    )
    assert series[0]["value"][1] == "1", series


def test_aiges_answers_on_its_published_port(stack):
    with Client(f"127.0.0.1:{stack.env['AIGES_GRPC_PORT']}") as client:
        assert client.once({"text": b"composed"}, expect=["text"])["text"] == b"composed"


def test_stopping_aiges_deregisters_it_and_exits_0(stack):
    wait_for(stack.etcd_get, timeout=90, interval=0.5, what=f"{PROVIDER} in etcd")
    stack.compose("stop", "aiges", timeout=120)
    assert (
        stack.engine.podman("inspect", "--format", "{{.State.ExitCode}}", stack.container("aiges")).stdout.strip()
        == "0"
    )
    assert stack.etcd_get() == {}  # deleted as the drain began, not left to its lease
