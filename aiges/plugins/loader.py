"""Path -> Plugin: find the wrapper, import it, and pick the adapter for its style."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from aiges.plugins.contract import DetachedHost, Plugin, PluginHost, PluginLoadError
from aiges.plugins.embed import install as install_embed

MODULE_NAME = "wrapper"


def resolve_wrapper_path(path: str | Path) -> Path:
    """A wrapper.py, a folder holding one, or a shared library; raises when there is none."""
    candidate = Path(path)
    if candidate.is_dir():
        inner = candidate / "wrapper.py"
        if not inner.is_file():
            raise PluginLoadError(f"wrapper not found: {candidate} is a folder without a wrapper.py")
        return inner
    if not candidate.exists():
        raise PluginLoadError(f"wrapper not found: {candidate} does not exist")
    if candidate.suffix not in (".py", ".so"):
        raise PluginLoadError(f"wrapper {candidate}: expected a .py file, a folder holding wrapper.py, or a .so")
    return candidate


@dataclass(frozen=True)
class LoadOptions:
    """``async_mode``: a C engine's one-shot calls go through wrapperExecAsync; a class-style
    wrapper's session results come only through its callback (wrapperRead is never called), as
    in the original's python mode. ``async_wait_s``: how long a C engine's async result may take
    (the exec timeout; the pool's watchdog acts at the same time)."""

    async_mode: bool = False
    async_wait_s: float | None = None


def load_plugin(path: str | Path, host: PluginHost | None = None, options: LoadOptions = LoadOptions()) -> Plugin:
    """Load a C engine (``.so``), or import a Python wrapper as module ``wrapper`` (as the original
    shim did), and adapt it. ``host`` answers the wrapper's callbacks (the worker; without one,
    as in ``aiges check``, they go nowhere)."""
    file = resolve_wrapper_path(path)
    if file.suffix == ".so":
        from aiges.plugins.cabi import CPlugin

        return CPlugin(file.resolve(), host or DetachedHost(), options.async_mode, options.async_wait_s)
    # aiges_embed exists only inside a worker, as it existed only inside the original's shim:
    # elsewhere wrappers fall back to aiges.dto
    embed = install_embed(host) if host is not None else None
    host = host or DetachedHost()
    module = import_wrapper(file)

    from aiges.plugins.pywrapper import PyWrapperPlugin, find_wrapper_class

    python_wrapper_class = find_wrapper_class(module)
    if python_wrapper_class is not None:
        return PyWrapperPlugin(python_wrapper_class, host)
    wrapper_class = getattr(module, "Wrapper", None)
    if isinstance(wrapper_class, type):
        from aiges.plugins.pyclass import ClassPlugin

        try:
            instance = wrapper_class()
        except Exception:  # noqa: BLE001
            raise PluginLoadError(f"wrapper {file}: Wrapper() failed:\n{traceback.format_exc().rstrip()}") from None
        plugin = ClassPlugin(instance, options.async_mode)
        if embed is not None:
            embed.error_text = plugin.error_text
        return plugin
    if callable(getattr(module, "wrapperOnceExec", None)) or callable(getattr(module, "wrapperCreate", None)):
        from aiges.plugins.pyfunc import FunctionPlugin

        function_plugin = FunctionPlugin(module)
        if embed is not None:
            embed.error_text = function_plugin.error_text
        return function_plugin
    raise PluginLoadError(
        f"wrapper {file} defines neither a Wrapper class, a python_wrapper.WrapperBase subclass, nor the "
        "functions wrapperInit/wrapperOnceExec"
    )


def import_wrapper(file: Path) -> ModuleType:
    """Import ``file`` as module ``wrapper``, its folder first on ``sys.path``."""
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, file)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"wrapper {file}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - anything the user's module does at import
        sys.modules.pop(MODULE_NAME, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginLoadError(f"wrapper {file} failed to import:\n{traceback.format_exc().rstrip()}") from None
    return module
