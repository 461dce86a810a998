"""``aiges health -c aiges.toml``, the images' HEALTHCHECK: it asks the server that the config
describes, on this machine, so that an image serving on another port than 5090 stays healthy."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, free_port


def health(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiges", "health", *args], capture_output=True, text=True, timeout=60)


def test_health_asks_the_port_its_config_names(serve, tmp_path):
    server = serve(ROOT / "demo" / "echo")
    own = health("-c", str(server.config_path))
    assert own.returncode == 0 and own.stdout.strip() == f"{server.address}: SERVING", own
    # A server listening on every address is asked on loopback.
    everywhere = tmp_path / "everywhere.toml"
    everywhere.write_text(server.config_path.read_text().replace('host = "127.0.0.1"', 'host = "0.0.0.0"'))
    assert health("-c", str(everywhere)).stdout.strip() == f"127.0.0.1:{server.port}: SERVING"


def test_health_fails_where_the_config_points_at_nothing(tmp_path):
    config = tmp_path / "aiges.toml"
    config.write_text(f"[svcName]\nport = {free_port()}\n")
    nobody = health("-c", str(config), "--timeout", "1")
    assert nobody.returncode == 1 and "UNAVAILABLE" in nobody.stderr, nobody
    config.write_text("[svcName]\nport = 0\n")
    unknown = health("-c", str(config))
    assert unknown.returncode == 1 and "port is 0" in unknown.stderr, unknown
    config.write_text("[svcName\n")
    broken = health("-c", str(config))
    assert broken.returncode == 1 and str(config) in broken.stderr, broken


def test_addr_wins_over_the_config(serve, tmp_path):
    server = serve(ROOT / "demo" / "echo")
    config = tmp_path / "elsewhere.toml"
    config.write_text(f"[svcName]\nport = {free_port()}\n")
    assert health("-c", str(config), "--addr", server.address).returncode == 0
