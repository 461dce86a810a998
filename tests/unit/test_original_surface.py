"""This SDK has every public name of the original's (the real ``aiges`` 0.16.0 from PyPI), and
the original template's ``__main__`` (``Wrapper().run()``) works with it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from original_sdk import original_root, render_template

# The original modules whose names wrappers use. aiges.types is not among them: 0.16.0 has no
# such module (its stream example imports it all the same); ours exists and is kept.
MODULES = ["aiges.sdk", "aiges.dto", "aiges.stream", "aiges.errors", "aiges.utils.log", "aiges.core.types"]


def module_file(root: Path, module: str) -> Path | None:
    path = root / (module.replace(".", "/") + ".py")
    return path if path.exists() else None


def public_names(root: Path, module: str) -> set[str]:
    """The names a wrapper can take from ``module`` of the original package, read with ``ast``
    from the wheel: top-level classes, functions and assigned names, also inside top-level
    ``try``/``if`` blocks (``if __name__ == "__main__"`` excepted), and names imported from another
    module of MODULES (a ``*`` import brings that module's own public names: ``aiges.sdk``
    re-exports ``aiges.stream`` and ``aiges.core.types`` that way, and ``callback``/``init_rq``
    from ``aiges.dto``). Not listed: names imported from the standard library (json, os, Lock,
    ...) or third-party packages (jinja2, pydantic, and ``aiges.schema.aischema``, which is
    pydantic models), modules bound by ``import x as y``, and names starting with "_"."""
    names: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.ImportFrom) and node.module in MODULES and module_file(root, node.module):
                for alias in node.names:
                    if alias.name == "*":
                        names.update(public_names(root, node.module))
                    else:
                        names.add(alias.asname or alias.name)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    walk(block)
            elif isinstance(node, ast.If) and "__name__" not in ast.unparse(node.test):
                walk(node.body)
                walk(node.orelse)

    path = module_file(root, module)
    assert path is not None, f"{module} is not in the original wheel"
    walk(ast.parse(path.read_text(encoding="utf-8")).body)
    return {name for name in names if not name.startswith("_")}


@pytest.fixture(scope="module")
def root() -> Path:
    return original_root("aiges")


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_of_the_original_module_is_here(root, module):
    names = public_names(root, module)
    assert names, f"nothing read from the original {module}"
    ours = importlib.import_module(module)
    missing = sorted(name for name in names if not hasattr(ours, name))
    assert not missing, f"{module} lacks the original's {missing}"
    exported = getattr(ours, "__all__", None)
    if exported is not None:  # `from module import *` must bring them too, as it did there
        assert not sorted(names - set(exported)), f"{module}.__all__ lacks {sorted(names - set(exported))}"


def test_the_lists_are_what_the_wrappers_use(root):
    """A check on the reader: the names the original's examples import are in its lists."""
    assert {
        "SessionManager",
        "WrapperBase",
        "StringBodyField",
        "callback",
        "init_rq",
        "DataEnd",
        "tpl",
        "Metaclass",
        "lock",
    } <= public_names(root, "aiges.sdk")
    assert {"StreamHandleThread", "WorkerThread", "ProcessThreadPool"} <= public_names(root, "aiges.stream")
    assert public_names(root, "aiges.errors") == {"OK", "INIT_ERROR", "USER_INIT_ERROR", "USER_EXEC_ERROR"}
    assert "json" not in public_names(root, "aiges.sdk") and "Template" not in public_names(root, "aiges.sdk")


def test_the_rendered_templates_main_verifies_itself(tmp_path):
    """``python wrapper.py`` runs ``Wrapper().run()``: init, one call with the declared sample
    values, and check_resp on the result."""
    folder = render_template(tmp_path)
    done = subprocess.run([sys.executable, "wrapper.py"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wrapper.py has been verified" in done.stderr, done.stderr
    assert "reqData key: data , size is" in done.stderr  # the wrapper's own log lines, in the original's format
