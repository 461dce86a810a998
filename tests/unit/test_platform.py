"""The platform's pure parts: what a config version changes, the gateway's topology from the
registry, and the haproxy.cfg it writes (checked by a real ``haproxy -c``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from aiges.config import load_config_text
from aiges.platform.config_changes import plan, restart_needed
from aiges.platform.config_store import ConfigStoreError, Scope
from aiges.platform.gateway.haproxy_config import Settings, render
from aiges.platform.gateway.topology import DRAIN, READY, Provider, Slots, build, handle_prefix, weight
from aiges.protocol.handle import HandleGenerator

BASE = """
[svcName]
port = 5090
[aiges]
wrapper = "demo/echo"
[fc]
max = 10
[log]
level = "info"
[wrapper]
mode = "echo"
"""


def config(text: str):
    return load_config_text(text, "test", Path("/srv/aiges.toml"))


def test_licences_and_log_level_are_live_the_wrapper_reloads_the_rest_needs_a_restart():
    old = config(BASE)
    new = config(
        BASE.replace("max = 10", "max = 20").replace('"info"', '"debug"').replace('mode = "echo"', 'mode = "x"')
        + "[batch]\nmax_size = 4\n"
    )
    steps = plan(old, new)
    assert steps.licences == 20 and steps.log_level == "debug" and steps.reload and not steps.keys
    assert steps.restart == ()
    moved = config(BASE.replace("port = 5090", "port = 6000\nmaxreceive = 8"))
    steps = plan(old, moved)
    assert not steps.reload and steps.licences is None
    assert [c.name for c in steps.restart] == ["[svcName] maxreceive", "[svcName] port"]
    assert restart_needed(old, moved) == ["[svcName] maxreceive: 4 -> 8", "[svcName] port: 5090 -> 6000"]
    assert restart_needed(old, old) == []


def test_a_log_level_alone_restarts_no_worker_and_the_keys_file_counts():
    old = config(BASE)
    steps = plan(old, config(BASE.replace('"info"', '"warning"')), "a", "b")
    assert steps.log_level == "warning" and not steps.reload and steps.keys
    assert plan(old, config(BASE + "\n# a comment\n")).empty  # the same keys, written differently


def test_scope_names_are_checked():
    assert Scope("p", "g", "s").current_key == b"/aiges/config/p/g/s/current"
    with pytest.raises(ConfigStoreError, match="group"):
        Scope("p", "g/x", "s")


def provider(address: str, health: str = "SERVING", free: int = 10, total: int = 10, **value) -> Provider:
    fields = {"health": health, "licences_free": free, "licences_total": total, "route": "/v1/private/echo"}
    return Provider(
        "echo", "v1", address, {**fields, "http": address.replace(":5090", ":8080"), "model": "echo", **value}
    )


def test_the_topology_gives_each_host_a_slot_a_state_and_a_weight():
    slots = Slots(4)
    topology, unplaced = build(
        [provider("10.0.0.1:5090"), provider("10.0.0.2:5090", free=5), provider("10.0.0.3:5090", "NOT_SERVING")],
        [],
        slots,
    )
    assert unplaced == []
    grpc = topology.backends["echo.v1_grpc"]
    assert {s.address: (s.state, s.weight) for s in grpc.values()} == {
        "10.0.0.1:5090": (READY, 256),
        "10.0.0.2:5090": (READY, 128),
        "10.0.0.3:5090": (DRAIN, 256),
    }
    assert topology.backends["echo.v1_http"][slots.taken["10.0.0.1:5090"]].address == "10.0.0.1:8080"
    assert topology.maps["routes"] == {"/v1/private/echo": "echo.v1_http"}
    assert topology.maps["services"] == {"echo": "echo.v1_grpc", "echo/v1": "echo.v1_grpc"}
    assert topology.maps["default"] == {"grpc": "echo.v1_grpc", "http": "echo.v1_http"}
    handle = HandleGenerator("10.0.0.2", 5090).next()
    assert topology.maps["handles"][handle[1:13]] == f"s{slots.taken['10.0.0.2:5090']}"


def test_a_host_whose_key_went_drains_and_one_past_the_slots_waits():
    slots = Slots(1)
    gone = provider("10.0.0.1:5090")
    topology, unplaced = build([provider("10.0.0.2:5090")], [gone], slots)
    assert unplaced == ["10.0.0.2:5090"]
    assert topology.backends["echo.v1_grpc"][1].state == DRAIN
    assert "/v1/private/echo" not in topology.maps["routes"]  # a draining host brings no new route


def test_the_default_service_is_the_one_asked_for():
    slots = Slots(4)
    other = Provider("counting", "v1", "10.0.0.9:5090", {"health": "SERVING", "route": "/v1/private/counting"})
    topology, _ = build([provider("10.0.0.1:5090"), other], [], slots, default_service="echo/v1")
    assert topology.maps["default"]["grpc"] == "echo.v1_grpc"
    topology, _ = build([provider("10.0.0.1:5090"), other], [], slots)
    assert topology.maps["default"]["grpc"] == "counting.v1_grpc"  # none asked for: the first by name


def test_weights_and_handle_prefixes():
    assert weight(0, 40) == 1 and weight(40, 40) == 256 and weight(20, 40) == 128 and weight(5, 0) == 1
    assert handle_prefix("127.0.0.1:15091") == "7f0000013af3"
    assert handle_prefix("[::1]:5090") is None


def test_the_haproxy_config_is_valid_for_haproxy(tmp_path):
    binary = require_tool("haproxy")
    for name in ("routes", "models", "services", "handles", "default"):
        (tmp_path / f"{name}.map").write_text("")
    settings = Settings(workdir=tmp_path, bind="127.0.0.1", grpc_port=1, http_port=2, stats_port=3, slots=4)
    (tmp_path / "haproxy.cfg").write_text(render(settings, ["echo.v1", "counting.v1"]))
    result = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
