"""``aiges check``: load the config and the wrapper without serving, and try one call.

Runs ``wrapperTestFunc`` when the wrapper defines one (the original SDK's self-test hook), else
a one-shot call with the declared sample inputs (each field's ``value`` or ``path``), checked
against the declared inputs and outputs. Prints the effective config; exits non-zero with the
reason on any problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from aiges.cli.common import add_config_options, load, load_wrapper
from aiges.config import Config
from aiges.engine.items import DataItem, payload_size
from aiges.errors import AigesError
from aiges.plugins.contract import Plugin, PluginLoadError
from aiges.schema.validation import Validator


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check", help="load the config and the wrapper, and try one call, without serving")
    add_config_options(parser)


def render_toml(config: Config) -> str:
    """The effective configuration, as a TOML document."""
    lines = []
    for section, values in config.as_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            name = key if key.replace("_", "").isalnum() else json.dumps(key)
            text = (
                ("true" if value else "false")
                if isinstance(value, bool)
                else (str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False))
            )
            lines.append(f"{name} = {text}")
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    print(f"# effective configuration ({config.path or 'defaults'})")
    print(render_toml(config))
    for warning in config.warnings:
        print(f"# warning: {warning}")
    if config.ignored:
        print(f"# accepted for compatibility, no effect: {', '.join(config.ignored)}")
    plugin = load_wrapper(config)
    if plugin is None:
        return 2
    try:
        plugin.init(config.wrapper)
    except PluginLoadError as exc:
        print(f"aiges check: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - wrapperInit raised
        print(f"aiges check: wrapperInit raised:\n{traceback.format_exc().rstrip()}", file=sys.stderr)
        return 2
    try:
        return try_one_call(plugin)
    finally:
        try:
            plugin.fini()
        except Exception:  # noqa: BLE001
            print(f"aiges check: wrapperFini raised:\n{traceback.format_exc().rstrip()}", file=sys.stderr)


def try_one_call(plugin: Plugin) -> int:
    wrapper = getattr(plugin, "wrapper", None)
    describe = f"{plugin.style}-style wrapper {plugin.service_id or ''}".rstrip()
    test_function = getattr(wrapper, "wrapperTestFunc", None) if wrapper is not None else None
    try:
        if test_function is not None:
            outcome = test_function([], [])
            if isinstance(outcome, int) and outcome != 0:
                print(f"aiges check: wrapperTestFunc returned {outcome}", file=sys.stderr)
                return 1
            print(f"aiges check: OK - {describe}: wrapperTestFunc passed")
            return 0
        fields = plugin.fields
        if not fields.inputs:
            print(f"aiges check: OK - {describe} loaded and initialised (it declares no sample inputs to call with)")
            return 0
        params = {k: str(f.test_value) for k, f in fields.params.items() if f.test_value not in (None, "")}
        items = [DataItem(k, f.test_value, f.data_type, 3, {}) for k, f in fields.inputs.items()]
        Validator(fields).check(params, items)
        results = plugin.once("aiges-check", params, items)
    except AigesError as exc:
        print(f"aiges check: the sample call failed with {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - anything the wrapper does
        print(f"aiges check: the sample call raised:\n{traceback.format_exc().rstrip()}", file=sys.stderr)
        return 1
    accepts = fields.accepts
    unexpected = [item.key for item in results if accepts and item.key not in accepts]
    if unexpected:
        print(
            f"aiges check: the wrapper returned undeclared output(s) {unexpected}; declared: {sorted(accepts)}",
            file=sys.stderr,
        )
        return 1
    summary = ", ".join(f"{item.key} ({payload_size(item.data)} bytes)" for item in results) or "no outputs"
    print(f"aiges check: OK - {describe}: a one-shot call with the declared sample inputs returned {summary}")
    return 0
