"""The config centre for real: ``aiges config`` against a real etcd, and real ``aiges serve
--etcd`` hosts (and the original's ``-m 1 -p -g -s -u``) that start from their group's version,
apply pushes live (licences, log level, keys, a reload for [wrapper]), report what needs a
restart, stay in their group, roll back, start from the cached copy when etcd is down and serve
on when it goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import IO

import grpc
import pytest
from conftest import Server, free_port, render_config, wait_for
from test_registry_resume import Etcd

from aiges.client import AigesCallError, Client, SigningKey

PROJECT = "shop"
ECHO = Path(__file__).resolve().parents[2] / "demo" / "echo"


def aiges(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aiges", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=os.environ
    )


def config(etcd: str, action: str, group: str | None, *args: str) -> subprocess.CompletedProcess:
    scope = ["--etcd", etcd, "--project", PROJECT] + (["--group", group] if group else [])
    return aiges("config", action, *scope, *args)


def push(etcd: str, group: str, text: str, tmp_path: Path, *extra: str) -> int:
    path = tmp_path / f"push-{group}-{free_port()}.toml"
    path.write_text(text)
    result = config(etcd, "push", group, "-c", str(path), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["version"])


class CentreServer(Server):
    """``aiges serve`` whose config comes from the config centre."""

    def __init__(self, workdir: Path, port: int, argv: list[str]) -> None:
        super().__init__(workdir, ECHO, port=port, config="")
        self.argv = argv
        self.output: IO[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> CentreServer:
        self.output = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiges", "serve", *self.argv],
            stdout=self.output,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        if wait:
            self.wait_serving(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        code = super().stop(timeout)
        if self.output is not None:
            self.output.close()
        return code

    def status(self) -> dict:
        result = aiges("status", "--addr", self.address)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def events(self, event: str) -> list[dict]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == event:
                    found.append(entry)
        return found


def centre(etcd: str, group: str, cache: Path, original_flags: bool = False) -> list[str]:
    if original_flags:
        return [
            "-m",
            "1",
            "-p",
            PROJECT,
            "-g",
            group,
            "-s",
            "svcName",
            "-u",
            f"http://{etcd}",
            "--config-cache",
            str(cache),
        ]
    return [
        "--etcd",
        etcd,
        "--project",
        PROJECT,
        "--group",
        group,
        "--service",
        "svcName",
        "--config-cache",
        str(cache),
    ]


def host_config(
    port: int, etcd: str, *, licences: int = 5, extra: str = "", metrics_port: int = 0, wrapper: dict | None = None
) -> str:
    registry = f'[registry]\nbackend = "etcd"\nendpoints = "{etcd}"\nttl = 3\n'
    return render_config(
        ECHO, port, licences=licences, extra=registry + extra, metrics_port=metrics_port, wrapper_config=wrapper
    )


# -- the command line -----------------------------------------------------------------------


def test_push_list_show_diff_and_rollback(etcd, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fc]\nmax = 'many'\n")
    refused = config(etcd, "push", "g1", "-c", str(bad))
    assert refused.returncode == 2 and "[fc] max: expected an integer" in refused.stderr, refused.stderr
    assert json.loads(config(etcd, "list", "g1", "--json").stdout)["versions"] == []

    first = host_config(free_port(), etcd)
    assert push(etcd, "g1", first, tmp_path, "--comment", "first") == 1
    second = first.replace("max = 5", "max = 8").replace("maxreceive = 16", "maxreceive = 8")
    assert push(etcd, "g1", second, tmp_path) == 2
    assert push(etcd, "g2", first, tmp_path) == 1

    listing = json.loads(config(etcd, "list", "g1", "--json").stdout)
    assert listing["current"] == 2 and [v["version"] for v in listing["versions"]] == [1, 2]
    assert listing["versions"][0]["comment"] == "first" and listing["versions"][0]["by"]
    assert config(etcd, "show", "g1", "1").stdout == first
    groups = {row["group"]: row["version"] for row in json.loads(config(etcd, "list", None, "--json").stdout)}
    assert groups == {"g1": 2, "g2": 1}

    diff = config(etcd, "diff", "g1").stdout
    assert "-max = 5" in diff and "+max = 8" in diff
    assert "# live: licences resized to 8" in diff and "# restart needed: [svcName] maxreceive" in diff
    across = json.loads(config(etcd, "diff", "g1", "--to-group", "g2", "--json").stdout)
    assert across["from"].endswith("g1/svcName version 2") and "+max = 5" in across["diff"]

    rolled = json.loads(config(etcd, "rollback", "g1", "--json").stdout)
    assert rolled == {**rolled, "current": 1, "from": 2}
    assert json.loads(config(etcd, "list", "g1", "--json").stdout)["current"] == 1
    missing = config(etcd, "rollback", "g1", "7")
    assert missing.returncode == 2 and "no version 7" in missing.stderr
    promoted = config(etcd, "push", "g2", "--from-group", "g1", "--json")
    assert promoted.returncode == 0 and json.loads(promoted.stdout)["version"] == 2
    assert config(etcd, "show", "g2").stdout == first


def test_serve_needs_a_pushed_config_and_says_how(etcd, tmp_path):
    result = aiges("serve", *centre(etcd, "nowhere", tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 2
    assert "no config pushed for shop/nowhere/svcName" in result.stderr and "aiges config push" in result.stderr


# -- hosts that follow their group ------------------------------------------------------------


def calls_in_background(address: str, stop: threading.Event, failures: list[str], count: list[int]) -> None:
    with Client(address) as client:
        while not stop.is_set():
            try:
                client.once({"text": b"hi"}, expect=["text"])
                count[0] += 1
            except (AigesCallError, grpc.RpcError) as exc:
                failures.append(repr(exc))


def metric(address: str, name: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return "\n".join(line for line in lines if line.startswith(name))


def test_hosts_apply_their_groups_pushes_live_and_a_gray_push_stays_in_its_group(etcd, tmp_path):
    ports, metrics = (free_port(), free_port()), free_port()
    v1 = {
        group: push(etcd, group, host_config(port, etcd, metrics_port=metrics if group == "g1" else 0), tmp_path)
        for group, port in zip(("g1", "g2"), ports, strict=True)
    }
    assert v1 == {"g1": 1, "g2": 1}
    one = CentreServer(tmp_path, ports[0], centre(etcd, "g1", tmp_path / "cache1")).start()
    two = CentreServer(tmp_path, ports[1], centre(etcd, "g2", tmp_path / "cache2", original_flags=True))
    stop, failures, count = threading.Event(), list[str](), [0]
    caller = threading.Thread(target=calls_in_background, args=(one.address, stop, failures, count))
    try:
        two.start()
        assert one.status()["config"]["version"] == 1 and two.status()["config"]["group"] == "g2"
        caller.start()
        changed = host_config(ports[0], etcd, licences=8, metrics_port=metrics, wrapper={"mode": "echo"})
        changed = changed.replace("maxreceive = 16", "maxreceive = 8").replace('level = "info"', 'level = "debug"')
        assert push(etcd, "g1", changed, tmp_path) == 2
        status = wait_for(
            lambda: (s := one.status())["config"]["version"] == 2 and s["reload"]["generation"] == 2 and s, 60
        )
        assert status["licences_total"] == 8 and not status["reload"]["reloading"]
        assert status["config"]["restart_needed"] == ["[svcName] maxreceive: 16 -> 8"]
        applied = status["config"]["last_change"]["applied"]
        assert "[fc] max 5 -> 8" in applied and "[log] level info -> debug" in applied, applied
        assert 'group="g1"' in metric(f"127.0.0.1:{metrics}", "aiges_config_version") and " 2.0" in metric(
            f"127.0.0.1:{metrics}", "aiges_config_version{"
        )
        assert metric(f"127.0.0.1:{metrics}", "aiges_config_restart_needed ").endswith(" 1.0")
        assert any(
            e["keys"] == ["[svcName] maxreceive: 16 -> 8"]
            for e in one.events("config keys need a restart to take effect")
        )
        other = two.status()
        assert other["config"]["version"] == 1 and other["licences_total"] == 5 and other["reload"]["generation"] == 1
        listed = json.loads(config(etcd, "hosts", None, "--service", "svcName", "--json").stdout)
        assert {(r["address"], r["group"], r["version"]) for r in listed} == {
            (one.address, "g1", 2),
            (two.address, "g2", 1),
        }

        assert config(etcd, "rollback", "g1").returncode == 0
        status = wait_for(
            lambda: (s := one.status())["config"]["version"] == 1 and s["reload"]["generation"] == 3 and s, 60
        )
        assert status["licences_total"] == 5 and status["config"]["restart_needed"] == []
        wait_for(lambda: count[0] > 20, 30)
    finally:
        stop.set()
        if caller.is_alive():
            caller.join(30)
        two.stop()
        one.stop()
    assert not failures, failures[:5]


def test_keys_pushed_with_the_config_take_effect_live(etcd, tmp_path):
    port = free_port()
    keys = '[[app]]\napp_id = "a1"\napi_key = "key-1"\napi_secret = "secret-1"\n'
    auth = '[auth]\nmode = "hmac"\nkeys = "keys.toml"\n'
    keys_path = tmp_path / "keys-1.toml"
    keys_path.write_text(keys)
    text = host_config(port, etcd, extra=auth)
    push(etcd, "g1", text, tmp_path, "--keys", str(keys_path))
    server = CentreServer(tmp_path, port, centre(etcd, "g1", tmp_path / "cache")).start()
    try:
        assert (tmp_path / "keys.toml").read_text() == keys  # relative to the base folder: here, its cwd
        with Client(server.address, signing=SigningKey("key-1", "secret-1")) as client:
            assert client.once({"text": b"a1"}, expect=["text"])["text"] == b"a1"
        with (
            Client(server.address, signing=SigningKey("key-new", "secret-new")) as client,
            pytest.raises(grpc.RpcError),
        ):
            client.once({"text": b"new"}, expect=["text"])
        keys_path.write_text(keys + '[[app]]\napp_id = "new"\napi_key = "key-new"\napi_secret = "secret-new"\n')
        push(etcd, "g1", text, tmp_path, "--keys", str(keys_path))

        def new_app_calls() -> bool:
            with Client(server.address, signing=SigningKey("key-new", "secret-new")) as client:
                try:
                    return client.once({"text": b"new"}, expect=["text"])["text"] == b"new"
                except grpc.RpcError:
                    return False

        wait_for(new_app_calls, 30, interval=0.3)
        [applied] = server.events("config version applied")  # the status needs credentials here
        assert applied["version"] == 2 and any(step.startswith("keys file") for step in applied["applied"])
    finally:
        server.stop()


# -- without etcd ---------------------------------------------------------------------------------


def test_a_host_starts_from_its_cached_version_without_etcd_and_serves_on_when_etcd_goes(tmp_path):
    store = Etcd(tmp_path)
    store.start()
    port = free_port()
    cache = tmp_path / "cache"
    server = CentreServer(tmp_path, port, centre(store.endpoint, "g1", cache))
    try:
        push(store.endpoint, "g1", host_config(port, store.endpoint), tmp_path)
        server.start()
        assert (cache / PROJECT / "g1" / "svcName.json").exists()
        store.kill()
        wait_for(lambda: not server.status()["config"]["etcd_connected"], 30, interval=0.3)
        with server.client() as client:  # etcd lost: serving goes on
            assert client.once({"text": b"on"}, expect=["text"])["text"] == b"on"
        assert server.stop() == 0

        server = CentreServer(tmp_path, port, centre(store.endpoint, "g1", cache)).start()
        assert server.status()["config"]["started_from"] == "cache"
        [warning] = server.events("etcd unreachable: starting from the cached config version")
        assert warning["version"] == 1 and warning["level"] == "warning"
        store.start()
        wait_for(lambda: server.status()["config"]["etcd_connected"], 30, interval=0.3)
        push(store.endpoint, "g1", host_config(port, store.endpoint, licences=9), tmp_path)
        wait_for(lambda: server.status()["licences_total"] == 9, 30, interval=0.3)
    finally:
        server.stop()
        if store.process is not None and store.process.poll() is None:
            store.kill()
    no_cache = aiges("serve", *centre(store.endpoint, "g1", tmp_path / "empty-cache"), cwd=tmp_path)
    assert no_cache.returncode == 2
    assert "etcd cannot be reached" in no_cache.stderr and "no version of shop/g1/svcName is cached" in no_cache.stderr


def test_the_originals_mode_zero_serves_the_file_and_ignores_the_centre_flags(tmp_path):
    server = Server(tmp_path, ECHO)
    try:
        server.start(extra_args=("-m", "0", "-p", "AIaaS", "-g", "dx", "-u", "http://companion.example:6868"))
        assert server.client().once({"text": b"file"}, expect=["text"]).code == 0
        assert "config" not in json.loads(aiges("status", "--addr", server.address).stdout) or (
            json.loads(aiges("status", "--addr", server.address).stdout)["config"] is None
        )
    finally:
        server.stop()
