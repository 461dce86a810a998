"""The GPU Dockerfile's steps, built on a stand-in of its base.

Its base, nvidia/cuda:12.4.1-runtime-ubuntu22.04, cannot be pulled here (no registry), and Ubuntu
22.04 is not in Debian's mirror, so BASE_IMAGE is a Debian bookworm stand-in (minbase with
ca-certificates, as the CUDA images have; tests/images/standin/cuda.Containerfile): what this
shows is that everything but CUDA itself (the distribution's Python, the virtual environment,
aiges, tini, the user, the HEALTHCHECK, the drain) installs and starts. CUDA, the NVIDIA driver and
GPUs are not here: the image finds no GPU and runs one CPU worker, which is what `gpus = "auto"`
does on a machine without one (``make gpu-check`` covers GPUs, on a machine that has them).
"""

from __future__ import annotations

import urllib.request

import pytest

from aiges.client import Client

from .imagelib import GPU_IMAGE, REPORT, ROOT, free_ports, service_config, write_config

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def gpu_image(engine, cuda_base) -> str:
    seconds = engine.build(
        GPU_IMAGE, ROOT / "docker" / "gpu" / "Dockerfile", ROOT, build_args={"BASE_IMAGE": cuda_base}
    )
    REPORT.setdefault("images", {})[GPU_IMAGE] = {
        "build_s": seconds,
        "size": engine.image_size(GPU_IMAGE),
        "base": cuda_base,
        "base_size": engine.image_size(cuda_base),
        "note": "a stand-in base for nvidia/cuda:12.4.1-runtime-ubuntu22.04 (no registry; Ubuntu is not in Debian's"
        " mirror): Debian bookworm, no CUDA, no GPU; everything else installed and started",
    }
    return GPU_IMAGE


@pytest.fixture(scope="module")
def served(engine, gpu_image, tmp_path_factory):
    port, metrics, http = free_ports(3)
    config = write_config(tmp_path_factory.mktemp("gpu"), service_config(port, metrics, http))
    container = engine.start(
        gpu_image, name_hint="gpu", address=f"127.0.0.1:{port}", options=("-v", f"{config}:/home/aiges/aiges.toml:ro")
    )
    container.ports = {"grpc": port, "metrics": metrics}
    try:
        REPORT["images"][gpu_image]["serving_s"] = container.wait_serving()
        yield container
    finally:
        container.remove()


def test_it_starts_healthy_without_a_gpu_and_answers(gpu_image, served):
    REPORT["images"][gpu_image]["healthy_s"] = served.wait_healthy()
    with Client(served.address) as client:
        assert client.once({"text": b"no cuda here"}, expect=["text"])["text"] == b"no cuda here"
    with urllib.request.urlopen(f"http://127.0.0.1:{served.ports['metrics']}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert "\naiges_workers 1.0\n" in metrics, metrics
    assert "aiges_gpu_" not in metrics  # no GPU found: no GPU gauges


def test_it_runs_the_distributions_python_as_uid_1000_under_tini(gpu_image, served):
    processes = {p["pid"]: p for p in served.processes()}
    assert processes["1"]["comm"] == "tini" and {p["user"] for p in processes.values()} == {"aiges"}, processes
    python = served.exec(
        "sh", "-c", "readlink -f /opt/aiges/bin/python; python -c 'import pynvml, aiges'", check=True
    ).stdout.strip()
    assert python.startswith("/usr/bin/python3"), python
    environment = served.exec("env", check=True).stdout
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in environment


def test_it_stops_with_exit_code_0(served):
    code, seconds = served.stop(timeout_s=40)
    assert code == 0, served.logs()
    assert seconds < 30
