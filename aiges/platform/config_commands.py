"""``aiges config push/list/show/diff/rollback/hosts``: the config centre from the command line.

    aiges config push -c aiges.toml [--keys keys.toml] --etcd E --project P --group G --service S
    aiges config push --from-group canary ...        the version another group runs (a gray release's next step)
    aiges config list ...                            the group's versions (without --group: every group's current)
    aiges config show [N] ...                        a version's aiges.toml (default: the current one)
    aiges config diff [A [B]] [--to-group G2] ...    what changed, and how the hosts will take it
    aiges config rollback [N] ...                    the group back to version N (default: the one before)
    aiges config hosts ...                           the registered hosts: group, version, health

A push is refused, with the line ``aiges serve`` would print, when the config does not load.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiges.config import DEFAULT_SERVICE, ConfigError, load_config_text
from aiges.platform.config_changes import Plan, plan
from aiges.platform.config_store import (
    ConfigStore,
    ConfigStoreError,
    Current,
    Scope,
    Version,
    connect,
    pushed_by,
    version_record,
)

Command = Callable[[argparse.Namespace, ConfigStore], Awaitable[int]]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help="the config centre: push, list, show, diff, roll back configs in etcd")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, group_required: bool = True) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        command.add_argument("--etcd", "-u", required=True, help="etcd endpoints, comma separated")
        command.add_argument("--project", "-p", required=True)
        command.add_argument("--group", "-g", required=group_required, help="the group (a gray release's unit)")
        command.add_argument(
            "--service", "-s", default=DEFAULT_SERVICE, help=f"the service (default {DEFAULT_SERVICE})"
        )
        command.add_argument("--json", action="store_true", help="print JSON")
        return command

    push = action("push", "store a config as the group's next version (refused if it does not load)")
    source = push.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", help="the aiges.toml to push")
    source.add_argument("--from-group", help="push the version this other group runs")
    push.add_argument("--keys", help="the [auth] keys file to push with it (the apps, their keys and limits)")
    push.add_argument("--comment", "-m", default="", help="why (shown by list)")
    push.add_argument("--by", default=None, help="who pushes (default: user@host)")
    action("list", "the group's versions; without --group, each group's current version", group_required=False)
    show = action("show", "print a version's aiges.toml")
    show.add_argument("number", nargs="?", type=int, help="the version (default: the current one)")
    show.add_argument("--keys", action="store_true", help="print its keys file instead")
    diff = action("diff", "what changed between two versions, and how running hosts take it")
    diff.add_argument(
        "numbers", nargs="*", type=int, help="A [B]: from A to B (default: the one before current, to current)"
    )
    diff.add_argument("--to-group", help="compare the group's current version with this group's")
    rollback = action("rollback", "make an earlier version the group's current one again")
    rollback.add_argument("number", nargs="?", type=int, help="the version (default: the one before the current)")
    rollback.add_argument("--by", default=None, help="who rolls back (default: user@host)")
    hosts = action("hosts", "the registered hosts of this project and service: group, version, health", False)
    hosts.add_argument("--registry-prefix", default="/aiges/services", help="[registry] prefix")


def run(args: argparse.Namespace) -> int:
    command: Command = COMMANDS[args.action]

    async def go() -> int:
        async with connect(args.etcd) as client:
            return await command(args, ConfigStore(client))

    try:
        return asyncio.run(go())
    except (ConfigStoreError, ConfigError) as exc:
        print(f"aiges config {args.action}: {exc}", file=sys.stderr)
        return 2


def scope_of(args: argparse.Namespace, group: str | None = None) -> Scope:
    return Scope(args.project, group or args.group, args.service)


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def validate(toml: str, where: str, service: str, base: Path, keys: str | None) -> list[str]:
    """Raise ConfigError if the config (or its keys file) does not load; its warnings otherwise."""
    config = load_config_text(toml, where, base / "aiges.toml", service)
    if keys is not None:
        from aiges.server.security.app_keys import KeysError, parse_keys

        try:
            parse_keys(keys, "the keys file")
        except KeysError as exc:
            raise ConfigError(str(exc)) from None
    warnings = list(config.warnings)
    if config.auth.mode == "hmac" and keys is None:
        warnings.append("[auth] mode is hmac and no --keys was pushed: hosts use the keys file they have")
    return warnings


async def push(args: argparse.Namespace, store: ConfigStore) -> int:
    scope = scope_of(args)
    if args.from_group:
        found, _, _ = await store.current_version(scope_of(args, args.from_group))
        if found is None:
            raise ConfigStoreError(f"{scope_of(args, args.from_group).label()}: nothing was pushed there")
        toml, keys, source = found.toml, found.keys, f"{args.from_group} version {found.number}"
        base = Path.cwd()
    else:
        path = Path(args.config)
        try:
            toml = path.read_text(encoding="utf-8")
            keys = Path(args.keys).read_text(encoding="utf-8") if args.keys else None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}") from None
        source, base = str(path.resolve()), path.resolve().parent
    for warning in validate(toml, source, args.service, base, keys):
        print(f"aiges config push: warning: {warning}", file=sys.stderr)
    version = await store.push(scope, toml, keys, by=args.by or pushed_by(), comment=args.comment, source=source)
    if args.json:
        print(json.dumps(version_record(version, Current(version.number, version.by, version.at, "push"))))
    else:
        print(f"{scope.label()}: version {version.number} pushed and current ({version.sha256[:12]})")
    return 0


async def list_versions(args: argparse.Namespace, store: ConfigStore) -> int:
    if not args.group:
        rows = []
        for group in await store.groups(args.project, args.service):
            version, current, _ = await store.current_version(scope_of(args, group))
            assert version is not None and current is not None
            rows.append(
                {"group": group, **version_record(version, current), "set_by": current.by, "set_at": current.at}
            )
        if args.json:
            print(json.dumps(rows))
        for row in [] if args.json else rows:
            print(f"{row['group']:<16} version {row['version']:<4} {when(row['set_at'])}  {row['set_by']}")
        return 0
    scope = scope_of(args)
    current, _ = await store.current(scope)
    versions = await store.versions(scope)
    if args.json:
        print(
            json.dumps(
                {
                    "current": current.number if current else None,
                    "versions": [version_record(v, current) for v in versions],
                }
            )
        )
        return 0
    for version in versions:
        mark = "*" if current is not None and current.number == version.number else " "
        extra = f"  {version.comment}" if version.comment else ""
        print(f"{mark} {version.number:<4} {when(version.at)}  {version.by:<24} {version.source}{extra}")
    if current is not None and current.action == "rollback":
        print(
            f"current: version {current.number}, rolled back from {current.previous} "
            f"by {current.by} at {when(current.at)}"
        )
    return 0


async def pick(store: ConfigStore, scope: Scope, number: int | None) -> Version:
    if number is None:
        version, _, _ = await store.current_version(scope)
    else:
        version = await store.version(scope, number)
    if version is None:
        raise ConfigStoreError(f"{scope.label()}: no version {number if number is not None else '(nothing pushed)'}")
    return version


async def show(args: argparse.Namespace, store: ConfigStore) -> int:
    version = await pick(store, scope_of(args), args.number)
    text = version.keys if args.keys else version.toml
    if args.keys and text is None:
        raise ConfigStoreError(f"version {version.number} has no keys file")
    print(text, end="" if (text or "").endswith("\n") else "\n")
    return 0


def describe(steps: Plan) -> list[str]:
    lines = []
    if steps.licences is not None:
        lines.append(f"live: licences resized to {steps.licences}")
    if steps.log_level is not None:
        lines.append(f"live: the server's log level to {steps.log_level}")
    if steps.keys:
        lines.append("live: the keys file (apps, keys, per-app limits) rewritten")
    if steps.reload:
        lines.append("reload: new workers with the new wrapper settings, no call dropped")
    lines += [f"restart needed: {change}" for change in steps.restart]
    return lines or ["nothing that a host would change"]


async def diff(args: argparse.Namespace, store: ConfigStore) -> int:
    scope = scope_of(args)
    if args.to_group:
        old = await pick(store, scope, args.numbers[0] if args.numbers else None)
        new = await pick(store, scope_of(args, args.to_group), args.numbers[1] if len(args.numbers) > 1 else None)
        labels = (
            f"{scope.label()} version {old.number}",
            f"{scope_of(args, args.to_group).label()} version {new.number}",
        )
    else:
        current = await pick(store, scope, None)
        if len(args.numbers) >= 2:
            old, new = await pick(store, scope, args.numbers[0]), await pick(store, scope, args.numbers[1])
        elif len(args.numbers) == 1:
            old, new = await pick(store, scope, args.numbers[0]), current
        else:
            old, new = await pick(store, scope, max(current.number - 1, 1)), current
        labels = (f"{scope.label()} version {old.number}", f"{scope.label()} version {new.number}")
    base = Path.cwd() / "aiges.toml"
    steps = plan(
        load_config_text(old.toml, labels[0], base, args.service),
        load_config_text(new.toml, labels[1], base, args.service),
        old.keys,
        new.keys,
    )
    text = "".join(
        difflib.unified_diff(
            old.toml.splitlines(keepends=True), new.toml.splitlines(keepends=True), labels[0], labels[1]
        )
    )
    if args.json:
        print(json.dumps({"from": labels[0], "to": labels[1], "diff": text, "how": describe(steps)}))
        return 0
    print(text, end="")
    print("\n".join(f"# {line}" for line in describe(steps)))
    return 0


async def rollback(args: argparse.Namespace, store: ConfigStore) -> int:
    scope = scope_of(args)
    pointer = await store.rollback(scope, args.number, by=args.by or pushed_by())
    if args.json:
        print(json.dumps({"current": pointer.number, "from": pointer.previous, "by": pointer.by, "at": pointer.at}))
    else:
        print(f"{scope.label()}: version {pointer.number} is current again (was {pointer.previous})")
    return 0


async def hosts(args: argparse.Namespace, store: ConfigStore) -> int:
    prefix = args.registry_prefix.rstrip("/") + "/"
    listing = await store.client.get_prefix(prefix.encode())
    rows: list[dict[str, Any]] = []
    for kv in listing:
        try:
            value = json.loads(kv.value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        config = value.get("config") if isinstance(value, dict) else None
        if (
            not isinstance(config, dict)
            or config.get("project") != args.project
            or config.get("service") != args.service
        ):
            continue
        if args.group and config.get("group") != args.group:
            continue
        rows.append(
            {
                "address": value.get("address", ""),
                "group": config.get("group"),
                "version": config.get("version"),
                "health": value.get("health"),
                "licences_total": value.get("licences_total"),
            }
        )
    rows.sort(key=lambda r: (str(r["group"]), str(r["address"])))
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(
            f"{row['address']:<22} group {row['group']:<12} version {row['version']!s:<4} "
            f"{row['health']}  licences {row['licences_total']}"
        )
    return 0


COMMANDS: dict[str, Command] = {
    "push": push,
    "list": list_versions,
    "show": show,
    "diff": diff,
    "rollback": rollback,
    "hosts": hosts,
}
