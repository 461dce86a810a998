"""Bad configs and bad wrappers stop ``aiges serve`` with exit code 2 and one clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WRAPPERS, free_port, render_config


def run_serve(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aiges", "serve", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aiges.toml"
    path.write_text(text)
    return path


def test_missing_config_file(tmp_path):
    result = run_serve("-c", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml: no such config file" in result.stderr


def test_unreadable_toml(tmp_path):
    path = write(tmp_path, "[worker\ncount = 1\n")
    result = run_serve("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "aiges.toml: invalid TOML" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[worker]\ncount = "two"\n', "[worker] count: expected an integer, got string 'two'"),
        ("[fc]\nmax = 0\n", "[fc] max: must be >= 1, got 0"),
        ("[svcName]\nport = 70000\n", "[svcName] port: must be a port number"),
        ('[aiges]\nrealTimeRlt = "maybe"\n', "[aiges] realTimeRlt: expected true or false"),
        ('[worker]\ngpus = "first"\n', "[worker] gpus: expected 'auto', '' or a list"),
        ('[log]\nlevel = "loud"\n', "[log] level: must be one of"),
        ("[nonsense]\na = 1\n", "[nonsense]: unknown section"),
    ],
)
def test_bad_values_name_the_file_section_and_key(tmp_path, text, message):
    result = run_serve("-c", str(write(tmp_path, text)), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert str(tmp_path / "aiges.toml") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_keys_warn_and_legacy_keys_are_accepted(tmp_path):
    text = render_config(WRAPPERS / "missing.py", free_port()) + "[trace]\nable = 0\n"
    text = text.replace("[fc]\n", '[fc]\nable = 1\nrouter = "sessionManager"\nspeed = 3\n')
    result = run_serve("-c", str(write(tmp_path, text)), cwd=tmp_path)
    assert "[fc] speed: unknown key, ignored" in result.stderr
    assert "able" not in result.stderr and "trace" not in result.stderr
    assert "wrapper not found" in result.stderr


@pytest.mark.parametrize(
    ("wrapper", "fragments"),
    [
        ("missing.py", ["wrapper not found", "missing.py"]),
        ("empty", ["defines neither a Wrapper class"]),
        ("broken_import", ["failed to import", "Traceback", "ModuleNotFoundError", "this_module_does_not_exist"]),
        ("init_fails", ["wrapperInit returned 42: the model file is missing"]),
    ],
)
def test_a_bad_wrapper_exits_2_with_the_reason(tmp_path, wrapper, fragments):
    path = write(tmp_path, render_config(WRAPPERS / wrapper, free_port()))
    result = run_serve("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_flags_override_the_file(tmp_path):
    port = free_port()
    path = write(tmp_path, render_config(WRAPPERS / "missing.py", 1))
    result = run_serve("-c", str(path), "--wrapper", str(WRAPPERS / "empty"), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert "defines neither" in result.stderr
