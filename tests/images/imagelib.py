"""Helpers for the image tests: podman and buildah as this machine runs them, containers, polling.

Podman here (and on CI) runs as root inside a sandbox that cannot raise rlimits, so podman's
default ulimits are dropped in a containers.conf of our own (named by ``CONTAINERS_CONF``), and
runc is the runtime (crun fails on this machine's cgroups hybrid mode). Images are built with
``buildah build --isolation chroot --network host`` in the docker format (the OCI format has no
HEALTHCHECK); this machine's CA bundle is mounted into the build so that pip reaches PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CACHE = Path(os.environ.get("AIGES_IMAGE_CACHE", Path.home() / ".cache" / "aiges-images"))
SERVING = health_pb2.HealthCheckResponse.SERVING

# Images the tests build, rebuilt on every run (the stand-in bases are cached: see standin.py).
CPU_IMAGE = "localhost/aiges/aiges:test-cpu"
GPU_IMAGE = "localhost/aiges/aiges:test-gpu-standin"
SHOP_IMAGE = "localhost/aiges/shop:test"

# What the tests measured, printed at the end of the run (conftest.pytest_terminal_summary).
REPORT: dict[str, dict] = {}


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under AIGES_REQUIRE_TOOLS=1 (set by .ci/run), with the reason."""
    if os.environ.get("AIGES_REQUIRE_TOOLS"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:.0f}s")
        time.sleep(interval)


def health_status(address: str, timeout: float = 1.0) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status
        except grpc.RpcError:
            return None


def run(command: list[str], timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class Engine:
    """Rootful podman with runc and no default ulimits; buildah for builds."""

    def __init__(self, conf_dir: Path) -> None:
        conf_dir.mkdir(parents=True, exist_ok=True)
        self.conf = conf_dir / "containers.conf"
        self.conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n')
        os.environ["CONTAINERS_CONF"] = str(self.conf)
        self.podman_path = shutil.which("podman") or "podman"
        self.buildah_path = shutil.which("buildah") or "buildah"

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.podman_path, "--runtime", "runc", *args], timeout=timeout, check=check)

    def build(
        self,
        tag: str,
        dockerfile: Path,
        context: Path,
        *,
        build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        ca_bundle: bool = True,
        timeout: float = 900,
    ) -> float:
        """Build ``tag``; returns the seconds it took. The log is kept in CACHE/logs."""
        command = [
            self.buildah_path,
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--format",
            "docker",
            "--layers",
            "--force-rm",
            "-f",
            str(dockerfile),
            "-t",
            tag,
        ]
        for name, value in (build_args or {}).items():
            command += ["--build-arg", f"{name}={value}"]
        for name, value in (labels or {}).items():
            command += ["--label", f"{name}={value}"]
        if ca_bundle and CA_BUNDLE.is_file():
            command += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        command.append(str(context))
        logs = CACHE / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / (tag.rsplit("/", 1)[-1].replace(":", "_") + ".log")
        started = time.monotonic()
        with open(log, "w") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"building {tag} failed ({result.returncode}):\n{log.read_text()[-6000:]}")
        return time.monotonic() - started

    def image_exists(self, tag: str) -> bool:
        return self.podman("image", "exists", tag, check=False).returncode == 0

    def image(self, tag: str) -> dict:
        return json.loads(self.podman("image", "inspect", tag).stdout)[0]

    def label(self, tag: str, name: str) -> str | None:
        if not self.image_exists(tag):
            return None
        return (self.image(tag).get("Labels") or {}).get(name)

    def image_size(self, tag: str) -> int:
        return int(self.image(tag)["Size"])

    def start(
        self, image: str, *args: str, name_hint: str = "ct", options: tuple[str, ...] = (), address: str | None = None
    ) -> Container:
        name = f"aiges-test-{name_hint}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        # No systemd here to run healthcheck timers: the tests run the image's HEALTHCHECK
        # themselves (podman healthcheck run), so the timer is switched off.
        self.podman(
            "run", "-d", "--name", name, "--network", "host", "--health-interval", "disable", *options, image, *args
        )
        return Container(self, name, started, address)


@dataclass
class Container:
    engine: Engine
    name: str
    started: float  # monotonic time of `podman run`
    address: str | None = None  # host:port of its gRPC service, when known
    ports: dict[str, int] = field(default_factory=dict)
    serving_s: float | None = None
    healthy_s: float | None = None
    _removed: bool = field(default=False, repr=False)

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine.podman(*args, timeout=timeout, check=check)

    def state(self) -> dict:
        return json.loads(self.podman("inspect", self.name).stdout)[0]["State"]

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def logs(self) -> str:
        result = self.podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_serving(self, timeout: float = 120) -> float:
        """Poll the gRPC health service from the host until SERVING; returns seconds since `podman run`."""
        address = self.address
        assert address, "no address to poll"

        def serving() -> bool:
            if health_status(address) == SERVING:
                return True
            if not self.running():
                raise AssertionError(f"{self.name} exited {self.state().get('ExitCode')}:\n{self.logs()}")
            return False

        try:
            wait_for(serving, timeout, interval=0.05, what=f"{self.name} SERVING at {self.address}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None
        self.serving_s = time.monotonic() - self.started
        return self.serving_s

    def healthcheck(self) -> subprocess.CompletedProcess:
        """Run the image's own HEALTHCHECK command, as the engine's timer would."""
        return self.podman("healthcheck", "run", self.name, check=False, timeout=60)

    def wait_healthy(self, timeout: float = 120) -> float:
        wait_for(
            lambda: self.healthcheck().returncode == 0, timeout, interval=0.2, what=f"{self.name} HEALTHCHECK healthy"
        )
        self.healthy_s = time.monotonic() - self.started
        return self.healthy_s

    def processes(self) -> list[dict[str, str]]:
        """Every process in the container, seen from outside (podman top)."""
        lines = self.podman("top", self.name, "pid", "ppid", "user", "state", "comm").stdout.splitlines()
        return [
            dict(zip(("pid", "ppid", "user", "state", "comm"), line.split(None, 4), strict=False))
            for line in lines[1:]
            if line.strip()
        ]

    def exec(self, *command: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.podman("exec", self.name, *command, check=check)

    def stop(self, timeout_s: int = 60) -> tuple[int, float]:
        """``podman stop`` (the image's STOPSIGNAL, then SIGKILL after ``timeout_s``); returns the exit
        code and the seconds the stop took."""
        started = time.monotonic()
        self.podman("stop", "-t", str(timeout_s), self.name, timeout=timeout_s + 60)
        return int(self.state()["ExitCode"]), time.monotonic() - started

    def remove(self) -> None:
        if not self._removed:
            self.podman("rm", "-f", "-t", "0", self.name, check=False)
            self._removed = True


def write_config(directory: Path, text: str, name: str = "aiges.toml") -> Path:
    """A config to mount into a container: readable by its uid 1000."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def service_config(
    port: int,
    metrics_port: int,
    http_port: int | None,
    *,
    wrapper: str = "/home/aiges",
    drain_ms: int = 30000,
    workers: int = 0,
    gpus: str = "auto",
) -> str:
    """The image's own docker/aiges.toml with its ports moved to free ones (the containers share the
    host's network)."""
    text = (ROOT / "docker" / "aiges.toml").read_text()
    replaced = (
        text.replace("port = 5090", f"port = {port}")
        .replace("port = 9090", f"port = {metrics_port}")
        .replace('wrapper = "/home/aiges"', f'wrapper = "{wrapper}"')
        .replace("drain_timeout_ms = 30000", f"drain_timeout_ms = {drain_ms}")
        .replace("count = 0 ", f"count = {workers} ")
        .replace('gpus = "auto"', f'gpus = "{gpus}"')
    )
    if http_port is None:
        replaced = replaced.replace('listen = "0.0.0.0:8080"', 'listen = ""')
    else:
        replaced = replaced.replace('listen = "0.0.0.0:8080"', f'listen = "0.0.0.0:{http_port}"')
    assert replaced != text
    return replaced


def mib(size: int) -> str:
    value = size / (1 << 20)
    return f"{value:.0f} MiB" if abs(value) >= 10 else f"{value:.1f} MiB"
