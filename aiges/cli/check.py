"""``aiges check``: load the config and the wrapper without serving, and try one call.

Runs ``wrapperTestFunc`` when the wrapper defines one (the original SDK's self-test hook), else
a one-shot call with the declared sample inputs (each field's ``value`` or ``path``), checked
against the declared inputs and outputs. Prints the effective config; exits non-zero with the
reason on any problem. With ``[[service]]``, each service is checked so, in a process of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from aiges.cli.common import add_config_options, load, load_wrapper
from aiges.config import Config, ServiceSpec
from aiges.engine.items import DataItem, payload_size
from aiges.errors import AigesError
from aiges.plugins.contract import Plugin, PluginLoadError
from aiges.schema.validation import Validator


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check", help="load the config and the wrapper, and try one call, without serving")
    add_config_options(parser)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def toml_table(header: str, values: dict[str, Any]) -> list[str]:
    lines = [header]
    for key, value in values.items():
        name = key if key.replace("_", "").isalnum() else json.dumps(key)
        lines.append(f"{name} = {toml_value(value)}")
    lines.append("")
    return lines


def render_toml(config: Config) -> str:
    """The effective configuration, as a TOML document."""
    lines = []
    for section, values in config.as_dict().items():
        if section == "service" and isinstance(values, list):  # [[service]], each with its tables
            for entry in values:
                lines += toml_table("[[service]]", {k: v for k, v in entry.items() if not isinstance(v, dict)})
                for table, inner in entry.items():
                    if isinstance(inner, dict):
                        lines += toml_table(f"[service.{table}]", inner)
            continue
        lines += toml_table(f"[{section}]", values)
    return "\n".join(lines)


def single_form(config: Config, spec: ServiceSpec) -> Config:
    """One service of a list-form config as a single-form one (what ``aiges check`` tries)."""
    return dataclasses.replace(
        config,
        aiges=dataclasses.replace(config.aiges, wrapper=str(spec.wrapper_path)),
        worker=spec.worker,
        fc=spec.fc,
        batch=spec.batch,
        resources=spec.resources,
        wrapper=dict(spec.wrapper_config),
        services=(),
    )


def check_each(config: Config) -> int:
    """Each service of a list-form config checked in a child ``aiges check`` of its own (wrappers
    are imported as the module ``wrapper``, one per process)."""
    worst = 0
    with tempfile.TemporaryDirectory() as folder:
        for index, spec in enumerate(config.specs()):
            path = Path(folder) / f"service-{index}.toml"
            path.write_text(render_toml(single_form(config, spec)), encoding="utf-8")
            child = subprocess.run(
                [sys.executable, "-m", "aiges", "check", "-c", str(path), "-s", config.service_name],
                capture_output=True,
                text=True,
                check=False,
            )
            said = [line for line in (child.stdout + child.stderr).splitlines() if line.startswith("aiges")]
            for line in said or [f"aiges check: exited {child.returncode}"]:
                print(f"[{spec.label}] {line}", file=sys.stdout if child.returncode == 0 else sys.stderr)
            worst = max(worst, child.returncode)
    return worst


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
    if config.listed:
        return check_each(config)
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
