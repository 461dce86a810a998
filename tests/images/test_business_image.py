"""A service made with ``aiges new``, built FROM the CPU image just built (its Dockerfile's
``AIGES_IMAGE``), run, and called with its own sample input, as its README says."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from aiges.client import Client

from .imagelib import REPORT, SHOP_IMAGE, free_port, run

pytestmark = pytest.mark.timeout(900)

# A real requirement, to see the Dockerfile's `pip install -r requirements.txt` land next to aiges.
REQUIREMENT = "six==1.17.0"


def service_port() -> int:
    """A free port whose metrics port (port + 1000, as `aiges new` writes it) is free too."""
    while True:
        port = free_port()
        if port + 1000 < 65536:
            with socket.socket() as probe:
                try:
                    probe.bind(("0.0.0.0", port + 1000))
                except OSError:
                    continue
            return port


@pytest.fixture(scope="module")
def shop(engine, cpu_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("business")
    port = service_port()
    made = run([sys.executable, "-m", "aiges", "new", "shop", "--port", str(port)], cwd=folder)
    assert "created shop/" in made.stdout
    service = folder / "shop"
    with open(service / "requirements.txt", "a") as requirements:
        requirements.write(REQUIREMENT + "\n")
    seconds = engine.build(SHOP_IMAGE, service / "Dockerfile", service, build_args={"AIGES_IMAGE": cpu_image})
    REPORT.setdefault("images", {})[SHOP_IMAGE] = {
        "build_s": seconds,
        "size": engine.image_size(SHOP_IMAGE),
        "base_size": engine.image_size(cpu_image),
        "base": cpu_image,
    }
    container = engine.start(SHOP_IMAGE, name_hint="shop", address=f"127.0.0.1:{port}")
    try:
        REPORT["images"][SHOP_IMAGE]["serving_s"] = container.wait_serving()
        yield service, container
    finally:
        container.remove()


def test_the_service_image_is_healthy_on_its_own_port(shop):
    """The base image's HEALTHCHECK reads the port from the service's aiges.toml (not 5090)."""
    _, container = shop
    REPORT["images"][SHOP_IMAGE]["healthy_s"] = container.wait_healthy()
    assert container.state()["Health"]["Status"] == "healthy"


def test_the_service_answers_its_own_sample_input(shop):
    service, container = shop
    sample = (service / "test_data" / "sample.txt").read_bytes()
    with Client(container.address) as client:
        stats = json.loads(client.once({"text": sample}, params={"case": "upper"}, expect=["stats"])["stats"])
    assert stats["words"] == len(sample.split()) == 17
    assert stats["text"] == sample.decode().upper()
    # The call its README shows, from the service's folder.
    call = subprocess.run(
        [sys.executable, "-m", "aiges", "call", "-c", "aiges.toml", "--input", "text=@test_data/sample.txt"],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert call.returncode == 0, call.stdout + call.stderr
    assert '"words": 17' in call.stdout, call.stdout


def test_its_requirements_are_installed_next_to_aiges(engine, shop):
    _, container = shop
    found = container.exec("python", "-c", "import six, aiges; print(six.__version__, six.__file__)", check=True)
    version, path = found.stdout.split()
    assert version == REQUIREMENT.split("==")[1] and path.startswith("/opt/aiges/"), found.stdout
    processes = {p["pid"]: p for p in container.processes()}
    assert {p["user"] for p in processes.values()} == {"aiges"} and processes["1"]["comm"] == "tini", processes
