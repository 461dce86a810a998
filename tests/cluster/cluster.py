"""The cluster the tests run: a 3-member etcd, four aiges hosts and a client, each in its own
network namespace on one private bridge (see ``netns``), and the processes they run.

    e1 e2 e3   10.77.0.11-13   etcd members (client port 2379, peers 2380)
    h1 .. h4   10.77.0.21-24   ``aiges serve`` of tests/cluster/wrapper (the echo demo with a
                               service time), registered in etcd with a lease of TTL_S seconds;
                               their config comes from the config centre in the same etcd:
                               h1, h2 in group g1 (``--etcd --project --group --service``), h3,
                               h4 in group g2 (the original's ``-m 1 -p -g -s -u``)
    gw         10.77.0.30      ``aiges gateway``: HAProxy in front of the four hosts
    c1         10.77.0.100     the client: ``aiges xtest --etcd``, ``aiges xtest --addr`` the
                               gateway, ``aiges config``, and the probe

The test process itself stays outside (it has no route in): it starts and signals processes by
id, writes the hosts' control files, and asks the probe (a process in c1) what it needs to know.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from netns import World

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = Path(__file__).resolve().parent / "wrapper"
PYTHON = sys.executable

SERVICE = "echo"
VERSION = "v1"
PREFIX = f"/aiges/services/{SERVICE}/{VERSION}/providers/"
PORT = 5090
TTL_S = 5
SERVICE_MS = 40
WORKERS = 3
LICENCES = 40
SESSION_TTL_MS = 5000
EXEC_TIMEOUT_MS = 10000

ETCD = {"e1": 11, "e2": 12, "e3": 13}
HOSTS = {"h1": 21, "h2": 22, "h3": 23, "h4": 24}
GROUPS = {"h1": "g1", "h2": "g1", "h3": "g2", "h4": "g2"}
ORIGINAL_FLAGS = {"h3", "h4"}
"""Hosts started with the original loader's flags (-m 1 -p -g -s -u) rather than aiges' own."""
CLIENT = ("c1", 100)
GATEWAY = ("gw", 30)
PROJECT = "cluster"
SECTION = "svcName"
GATEWAY_GRPC = f"10.77.0.{GATEWAY[1]}:5090"


def group_config(licences: int = LICENCES, maxreceive: int = 4, wrapper_extra: str = "") -> str:
    """The config every host of a group runs, as pushed to the config centre: what differs per
    host (its address, its control folder) comes from its command line and environment."""
    return f"""
[{SECTION}]
host = "0.0.0.0"
port = {PORT}
maxreceive = {maxreceive}

[aiges]
wrapper = "{WRAPPER}"
drain_timeout_ms = 5000

[worker]
count = {WORKERS}
exec_timeout_ms = {EXEC_TIMEOUT_MS}
shm_mb = 8

[fc]
max = {licences}
ttl = {SESSION_TTL_MS}
roll = 500

[log]
level = "info"
format = "json"

[registry]
backend = "etcd"
endpoints = "{",".join(f"10.77.0.{octet}:2379" for octet in ETCD.values())}"
ttl = {TTL_S}
service = "{SERVICE}"
version = "{VERSION}"

[http]
listen = "0.0.0.0:8080"

[wrapper]
service_ms = "{SERVICE_MS}"
{wrapper_extra}
"""


T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.2, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what or predicate}")
        time.sleep(interval)


class EtcdMember:
    def __init__(self, world: World, name: str, address: str, workdir: Path, initial_cluster: str, token: str) -> None:
        self.world = world
        self.name = name
        self.address = address
        self.endpoint = f"{address}:2379"
        self.data_dir = workdir / f"etcd-{name}"
        self.log_path = workdir / f"etcd-{name}.log"
        self.initial_cluster = initial_cluster
        self.token = token
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("etcd") or "etcd"
        self.process = self.world.spawn(
            self.name,
            [
                binary,
                "--name",
                self.name,
                "--data-dir",
                str(self.data_dir),
                "--listen-client-urls",
                f"http://{self.endpoint}",
                "--advertise-client-urls",
                f"http://{self.endpoint}",
                "--listen-peer-urls",
                f"http://{self.address}:2380",
                "--initial-advertise-peer-urls",
                f"http://{self.address}:2380",
                "--initial-cluster",
                self.initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                self.token,
                # a shared 2-core machine: leader heartbeats are not taken for a failure too soon
                "--heartbeat-interval",
                "200",
                "--election-timeout",
                "2000",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ],
            self.log_path,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The member's process, once started."""
        if self.process is None:
            raise AssertionError(f"etcd member {self.name} was never started")
        return self.process

    def kill(self) -> None:
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)


class Host:
    def __init__(self, world: World, name: str, address: str, workdir: Path, etcd_endpoints: str) -> None:
        self.world = world
        self.name = name
        self.ip = address
        self.address = f"{address}:{PORT}"
        self.group = GROUPS[name]
        self.control = workdir / f"{name}-control"
        self.control.mkdir(parents=True, exist_ok=True)
        self.cache = workdir / f"{name}-config-cache"
        self.log_path = workdir / f"{name}.log"
        self.etcd_endpoints = etcd_endpoints
        self.process: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []

    def argv(self) -> list[str]:
        """``aiges serve`` from the config centre: its group's version, its own address."""
        if self.name in ORIGINAL_FLAGS:
            urls = ",".join(f"http://{e}" for e in self.etcd_endpoints.split(","))
            centre = ["-m", "1", "-p", PROJECT, "-g", self.group, "-s", SECTION, "-u", urls]
        else:
            centre = ["--etcd", self.etcd_endpoints, "--project", PROJECT, "--group", self.group, "--service", SECTION]
        return [PYTHON, "-m", "aiges", "serve", *centre, "--host", self.ip, "--config-cache", str(self.cache)]

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", CLUSTER_CONTROL_DIR=str(self.control))
        self.process = self.world.spawn(self.name, self.argv(), self.log_path, env=env, cwd=ROOT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The server's process, once started."""
        if self.process is None:
            raise AssertionError(f"host {self.name} was never started")
        return self.process

    def kill(self) -> None:
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
            self.exits.append(self.popen.wait(10))

    def terminate(self) -> None:
        self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self.exits.append(code)
        return code

    def worker_pids(self) -> list[int]:
        """The server's child processes (its workers), from /proc."""
        if not self.running:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == self.popen.pid:
                children.append(int(entry.name))
        return children

    def set_service_ms(self, ms: float | None) -> None:
        path = self.control / "service_ms"
        if ms is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(str(ms))

    def hold_init(self, hold: bool) -> None:
        path = self.control / "hold_init"
        if hold:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def log_events(self, event: str) -> list[dict]:
        return json_events(self.log_path, event)


def json_events(path: Path, event: str | None = None) -> list[dict]:
    """The JSON log lines of ``path`` (structlog's), those of one event when given."""
    found: list[dict] = []
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event is None or entry.get("event") == event:
                found.append(entry)
    return found


def log_time(entry: dict) -> float:
    """A structlog entry's timestamp (ISO, UTC) as this machine's monotonic clock reads it."""
    from datetime import datetime

    wall = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    return wall - (time.time() - time.monotonic())


class Gateway:
    """``aiges gateway`` in its own namespace: HAProxy in front of the hosts, its access log one
    JSON line a request."""

    def __init__(self, world: World, workdir: Path, etcd_endpoints: str) -> None:
        self.world = world
        self.name, octet = GATEWAY
        self.ip = f"10.77.0.{octet}"
        self.grpc = f"{self.ip}:5090"
        self.log_path = workdir / "gateway.log"
        self.access_path = workdir / "gateway-access.log"
        self.workdir = workdir / "gateway"
        self.etcd_endpoints = etcd_endpoints
        self.process: subprocess.Popen | None = None
        self._access_offset = 0
        self.requests: list[dict] = []
        """The access log's entries read so far (``t`` in monotonic time)."""

    def start(self) -> None:
        argv = [PYTHON, "-m", "aiges", "gateway", "--etcd", self.etcd_endpoints, "--bind", self.ip]
        argv += ["--workdir", str(self.workdir), "--access-log", str(self.access_path), "--log-format", "json"]
        argv += ["--drain-s", "10"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = self.world.spawn(self.name, argv, self.log_path, env=env, cwd=ROOT)

    def events(self, event: str | None = None) -> list[dict]:
        return [{**e, "t": log_time(e)} for e in json_events(self.log_path, event)]

    def host_states(self) -> dict[str, str]:
        """Each host's latest state as HAProxy's own checks and the gateway's routing show it."""
        states: dict[str, str] = {}
        for entry in json_events(self.log_path, "haproxy server state"):
            states[entry["address"]] = entry["status"]
        return states

    def access(self) -> list[dict]:
        """The access log's requests, read as it grows."""
        if not self.access_path.exists():
            return self.requests
        offset = time.time() - time.monotonic()
        with self.access_path.open("rb") as file:
            file.seek(self._access_offset)
            chunk = file.read()
        complete, newline, _ = chunk.rpartition(b"\n")
        self._access_offset += len(complete) + len(newline)
        for line in complete.decode(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.requests.append({**entry, "t": entry["t"] - offset})
        return self.requests

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ProbeClient:
    """Talks to ``probe.py`` in the client namespace over its stdin and stdout."""

    def __init__(self, world: World, node: str, endpoints: str, log_path: Path) -> None:
        self.process = world.spawn(
            node, [PYTHON, str(Path(__file__).with_name("probe.py")), endpoints, PREFIX], log_path, cwd=ROOT, pipes=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # pipes=True: text both ways
        self._requests: IO[str] = self.process.stdin
        self._answers: IO[str] = self.process.stdout
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._lock = threading.Lock()
        first = self._lines.get(timeout=60)
        if not json.loads(first).get("ready"):
            raise AssertionError(f"the probe did not start: {first}")

    def _read(self) -> None:
        for line in self._answers:
            self._lines.put(line)

    def ask(self, op: str, timeout: float = 30.0, **fields) -> dict:
        with self._lock:
            self._requests.write(json.dumps({"op": op, **fields}) + "\n")
            self._requests.flush()
            return json.loads(self._lines.get(timeout=timeout))

    def providers(self) -> dict[str, dict] | None:
        """The registered providers, None when etcd cannot answer."""
        answer = self.ask("providers")
        return answer["providers"] if answer["ok"] else None

    def etcd(self) -> dict[str, dict]:
        return self.ask("etcd")["members"]

    def status(self, address: str) -> dict | None:
        answer = self.ask("status", address=address)
        return answer["status"] if answer["ok"] else None

    def health(self, address: str) -> str | None:
        answer = self.ask("health", address=address)
        return answer["health"] if answer["ok"] else None

    def close(self) -> None:
        if self.process.poll() is None:
            self._requests.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Call:
    t: float  # when it was due to start, monotonic
    ms: float
    code: str | None
    host: str | None
    kind: str
    tries: list[tuple[str, float, str]] = field(default_factory=list)
    sent: float | None = None  # the last attempt, when others came first (else at t)


class CallLog:
    """An xtest ``--calls`` file, read as it grows: calls and the client's events, in monotonic time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start: float | None = None
        self.calls: list[Call] = []
        self.events: list[dict] = []
        self._offset = 0
        self._partial = ""

    def update(self) -> CallLog:
        if not self.path.exists():
            return self
        with self.path.open() as file:
            file.seek(self._offset)
            chunk = file.read()
            self._offset = file.tell()
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if not line:
                continue
            entry = json.loads(line)
            if "start_monotonic" in entry:
                self.start = entry["start_monotonic"]
            elif "event" in entry:
                self.events.append({**entry, "t": self.start + entry["t"]})
            else:
                self.calls.append(
                    Call(
                        self.start + entry["t"],
                        entry["ms"],
                        entry["code"],
                        entry.get("served") or entry["host"],  # through a gateway: the host that answered
                        entry["kind"],
                        [(a, self.start + t, c) for a, t, c in entry.get("tries", [])],
                        self.start + entry["sent"] if "sent" in entry else None,
                    )
                )
        return self

    def successes_on(self, host: str, after: float) -> int:
        return sum(1 for c in self.update().calls if c.host == host and c.code is None and c.t >= after)

    def last_attempt_on(self, host: str, after: float, before: float = float("inf")) -> float | None:
        """When this client last sent a call to ``host`` in [after, before) (an answered call, a
        failed final attempt, or a failed attempt it retried elsewhere)."""
        last = None
        for call in self.update().calls:
            times = [t for address, t, _ in call.tries if address == host]
            if call.host == host:
                times.append(call.sent if call.sent is not None else call.t)
            for t in times:
                if after <= t < before and (last is None or t > last):
                    last = t
        return last


class Xtest:
    """``aiges xtest`` running in the client namespace until stopped: ``target`` is ``--etcd
    ...`` (balanced over the registry) or ``--addr GATEWAY``."""

    def __init__(self, world: World, node: str, workdir: Path, name: str, target: list[str], args: list[str]) -> None:
        self.report_path = workdir / f"{name}.json"
        self.calls_path = workdir / f"{name}.calls.jsonl"
        self.log_path = workdir / f"{name}.log"
        argv = [
            PYTHON,
            "-m",
            "aiges",
            "xtest",
            *target,
            "--duration",
            "1800",
            "--json",
            str(self.report_path),
            "--calls",
            str(self.calls_path),
            *args,
        ]
        self.process = world.spawn(node, argv, self.log_path, cwd=ROOT)
        self.log = CallLog(self.calls_path)

    def stop(self, timeout: float = 60.0) -> dict:
        """SIGINT: it stops starting calls, waits for the running ones and writes its report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"xtest did not stop:\n{self.log_path.read_text()[-3000:]}") from None
        if not self.report_path.exists():
            raise AssertionError(f"xtest wrote no report:\n{self.log_path.read_text()[-3000:]}")
        self.log.update()
        return json.loads(self.report_path.read_text())


class Cluster:
    def __init__(self, workdir: Path, run_id: str) -> None:
        self.workdir = workdir
        self.world = World(run_id)
        self.etcd: dict[str, EtcdMember] = {}
        self.hosts: dict[str, Host] = {}
        self._probe: ProbeClient | None = None
        self.gateway: Gateway | None = None
        self.xtests: list[Xtest] = []
        self.endpoints = ",".join(f"10.77.0.{octet}:2379" for octet in ETCD.values())
        self.pushes: list[dict] = []

    def start(self) -> Cluster:
        world = self.world.create()
        for name, octet in {**ETCD, **HOSTS}.items():
            world.add_node(name, octet)
        world.add_node(*CLIENT)
        world.add_node(*GATEWAY)
        initial = ",".join(f"{name}=http://10.77.0.{octet}:2380" for name, octet in ETCD.items())
        for name, octet in ETCD.items():
            member = self.etcd[name] = EtcdMember(world, name, f"10.77.0.{octet}", self.workdir, initial, world.name)
            member.start()
        self._probe = ProbeClient(world, CLIENT[0], self.endpoints, self.workdir / "probe.log")
        wait_until(self.etcd_ready, 60, what="a 3-member etcd with a leader")
        for group in sorted(set(GROUPS.values())):
            self.push(group, group_config(), "first version")
        for name, octet in HOSTS.items():
            host = self.hosts[name] = Host(world, name, f"10.77.0.{octet}", self.workdir, self.endpoints)
            host.start()
        wait_until(
            lambda: self.registered(self.hosts.values()), 120, interval=0.5, what="four hosts registered SERVING"
        )
        gateway = self.gateway = Gateway(world, self.workdir, self.endpoints)
        gateway.start()
        wait_until(
            lambda: all(gateway.host_states().get(h.address) == "UP" for h in self.hosts.values()),
            60,
            what="the gateway routing to the four hosts",
        )
        return self

    @property
    def probe(self) -> ProbeClient:
        """The client node's probe (the cluster's view from outside), once started."""
        if self._probe is None:
            raise AssertionError("the cluster has not been started")
        return self._probe

    def aiges(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """An ``aiges`` command run in the client namespace."""
        command = ["ip", "netns", "exec", self.world.namespace(CLIENT[0]), PYTHON, "-m", "aiges", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def config(self, action: str, group: str | None, *args: str) -> subprocess.CompletedProcess:
        scope = ["--etcd", self.endpoints, "--project", PROJECT, "--service", SECTION]
        return self.aiges("config", action, *scope, *(["--group", group] if group else []), *args)

    def push(self, group: str, text: str, comment: str) -> int:
        """Push ``text`` to ``group``; its version number."""
        path = self.workdir / f"push-{len(self.pushes) + 1}.toml"
        path.write_text(text)
        result = self.config("push", group, "-c", str(path), "--comment", comment, "--json")
        if result.returncode != 0:
            raise AssertionError(f"aiges config push failed: {result.stderr}")
        record = json.loads(result.stdout)
        self.pushes.append({"group": group, "version": record["version"], "t": time.monotonic(), "comment": comment})
        return int(record["version"])

    def etcd_ready(self) -> bool:
        members = self.probe.etcd()
        return all(m["up"] and m["has_leader"] for m in members.values())

    def leader(self) -> EtcdMember | None:
        for endpoint, member in self.probe.etcd().items():
            if member.get("leader"):
                return next(m for m in self.etcd.values() if m.endpoint == endpoint)
        return None

    def registered(self, hosts, health: str = "SERVING") -> bool:
        providers = self.probe.providers()
        return providers is not None and all(
            h.address in providers and providers[h.address]["value"].get("health") == health for h in hosts
        )

    def xtest(self, name: str, args: list[str], through_gateway: bool = False) -> Xtest:
        target = ["--etcd", self.endpoints, "--service", SERVICE, "--version", VERSION]
        if through_gateway:
            target = ["--addr", GATEWAY_GRPC, "--retry-refused"]
        run = Xtest(self.world, CLIENT[0], self.workdir, name, target, args)
        self.xtests.append(run)
        return run

    def destroy(self) -> None:
        for run in self.xtests:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        if self._probe is not None:
            self._probe.close()
        if self.gateway is not None:
            self.gateway.stop()
        self.world.destroy()
