"""Fixtures of the image tests (``make image-test``; not part of ``make test``): the engine, the
stand-in bases, and the images under test, built once per run.

They need root (debootstrap, rootful podman), podman, buildah, runc and debootstrap, and a Debian
mirror in the apt sources. Without them each test is skipped with the reason, or fails under
AIGES_REQUIRE_TOOLS=1 as in .ci/run.
"""

from __future__ import annotations

import os
import shutil

import pytest

from . import standin
from .imagelib import CACHE, CPU_IMAGE, REPORT, ROOT, Engine, mib, unavailable

TOOLS = {"podman": "podman", "buildah": "buildah", "runc": "runc", "debootstrap": "debootstrap"}


@pytest.fixture(scope="session")
def engine():
    if os.geteuid() != 0:
        unavailable("the image tests need root: debootstrap and rootful podman (.ci/run runs them with sudo)")
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        unavailable(f"not installed: {', '.join(missing)} (Debian packages; .ci/run installs them)")
    if standin.debian_mirror() is None:
        unavailable("no Debian bookworm mirror in /etc/apt/sources.list*: nothing to debootstrap a stand-in base from")
    engine = Engine(CACHE / "conf")
    info = engine.podman("info", check=False)
    if info.returncode != 0:
        unavailable(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    yield engine
    # Each rebuild leaves the image it replaces untagged: drop those older than a day, keeping the
    # recent ones, which hold the layer cache of the next run.
    engine.podman("image", "prune", "--force", "--filter", "until=24h", check=False)


@pytest.fixture(scope="session")
def python_base(engine) -> str:
    """The stand-in for python:3.11.7-slim-bookworm (built once per machine)."""
    standin.ensure_noted(engine, standin.PYTHON)
    return standin.PYTHON


@pytest.fixture(scope="session")
def cuda_base(engine) -> str:
    """The stand-in for the CUDA runtime image: Debian bookworm, no CUDA (built once per machine)."""
    standin.ensure_noted(engine, standin.CUDA)
    return standin.CUDA


@pytest.fixture(scope="session")
def cpu_image(engine, python_base) -> str:
    """docker/cpu/Dockerfile built on the stand-in base."""
    seconds = engine.build(
        CPU_IMAGE, ROOT / "docker" / "cpu" / "Dockerfile", ROOT, build_args={"BASE_IMAGE": python_base}
    )
    REPORT.setdefault("images", {})[CPU_IMAGE] = {
        "build_s": seconds,
        "size": engine.image_size(CPU_IMAGE),
        "base": python_base,
        "base_size": engine.image_size(python_base),
    }
    return CPU_IMAGE


def pytest_terminal_summary(terminalreporter) -> None:
    if not REPORT:
        return
    write = terminalreporter.write_line
    terminalreporter.section("images")
    for image, entry in REPORT.get("standins", {}).items():
        write(f"stand-in {image}: {mib(entry['size'])} ({'built now' if entry['built'] else 'cached'})")
    for image, entry in REPORT.get("images", {}).items():
        parts = [f"{image}: {mib(entry['size'])}"]
        if "base_size" in entry:
            parts.append(f"= base {mib(entry['base_size'])} + {mib(entry['size'] - entry['base_size'])}")
        if "base" in entry:
            parts.append(f"on {entry['base']}")
        parts.append(f"built in {entry['build_s']:.0f}s")
        if "serving_s" in entry:
            parts.append(f"SERVING {entry['serving_s']:.1f}s after `podman run`")
        if "healthy_s" in entry:
            parts.append(f"HEALTHCHECK healthy at {entry['healthy_s']:.1f}s")
        write(", ".join(parts))
        if "note" in entry:
            write(f"    {entry['note']}")
        for line in entry.get("made_of", []):
            write(f"    {line}")
    for name, entry in REPORT.get("runs", {}).items():
        write(f"{name}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
