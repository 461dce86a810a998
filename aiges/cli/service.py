"""``aiges service``: add, replace and remove a running daemon's services, and list them.

    aiges service list -c aiges.toml
    aiges service add digits demo/digits -c aiges.toml --workers 2 --gpus 0 --licences 8
    aiges service add digits --entry digits.toml -c aiges.toml     # a [[service]] table from a file
    aiges service replace digits -c aiges.toml                     # its wrapper read afresh
    aiges service replace digits demo/digits-v2 -c aiges.toml      # another folder
    aiges service remove digits -c aiges.toml

``add`` and ``replace`` return once the new version serves: its workers are up and its
self-test (the declared-sample call) passed; a replaced version finishes its calls and sessions,
then stops. ``remove`` returns once the service's calls and sessions have finished. The wrapper
folder must be readable by the server (a path on its machine; it is made absolute here). Admin
apps only, when the server authenticates callers. Exits 0 on success, 1 when the server refused
or the service did not load (the reason is printed), 2 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc

from aiges.cli.common import add_client_options, running_server

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("service", help="add, replace, remove or list a running server's services")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("list", "list the services (name, version, state)"),
        ("add", "add a service from a wrapper folder"),
        ("replace", "replace a service by a new version, switched when its self-test passes"),
        ("remove", "remove a service, once its calls and sessions have finished"),
    ):
        each = actions.add_parser(action, help=text)
        if action != "list":
            each.add_argument("name", help="the service's name (its xsf serviceId and OIP model name)")
        if action in ("add", "replace"):
            each.add_argument("wrapper", nargs="?", help="wrapper.py, a folder holding one, or a .so")
            each.add_argument("--entry", help="a TOML file holding the service's [[service]] table (its keys)")
            each.add_argument("--version", dest="service_version", help="the version in the registry and OIP")
            each.add_argument("--workers", type=int, help="[worker] count")
            each.add_argument("--gpus", help="[worker] gpus")
            each.add_argument("--licences", type=int, help="[fc] max")
            each.add_argument(
                "--set", action="append", default=[], metavar="KEY=VALUE", help="a key of its wrapperInit config"
            )
        each.add_argument("-c", "--config", help="aiges.toml of the server (its host and port)")
        each.add_argument("--addr", help="HOST:PORT of the server (instead of --config)")
        each.add_argument("--section", default=None, help="the config's service section (default: svcName)")
        each.add_argument("--timeout", type=float, default=900, help="seconds to wait (default 900)")
        add_client_options(each)


def entry_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The service's table from the options (None: replace with the entry it was loaded with)."""
    table: dict[str, Any] = {}
    if args.entry:
        with open(args.entry, "rb") as file:
            table = tomllib.load(file)
        listed = table.get("service")
        if isinstance(listed, list) and len(listed) == 1:
            table = listed[0]
        base = Path(args.entry).resolve().parent
        if "wrapper" in table:
            table["wrapper"] = str((base / str(table["wrapper"])).resolve())
    if args.wrapper:
        table["wrapper"] = str(Path(args.wrapper).resolve())
    if args.service_version:
        table["version"] = args.service_version
    worker = {k: v for k, v in (("count", args.workers), ("gpus", args.gpus)) if v is not None}
    if worker:
        table["worker"] = {**table.get("worker", {}), **worker}
    if args.licences is not None:
        table["fc"] = {**table.get("fc", {}), "max": args.licences}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        table.setdefault("config", {})[key] = value
    return table or None


def run(args: argparse.Namespace) -> int:
    from aiges.client.credentials import open_channel
    from aiges.client.repository import Repository
    from aiges.config import ConfigError

    if args.addr is None and not args.config:
        print("aiges service: give -c aiges.toml or --addr HOST:PORT", file=sys.stderr)
        return 2
    try:
        address, tls, signing = running_server(args)
        table = entry_of(args) if args.action in ("add", "replace") else None
    except (ConfigError, ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"aiges service: {exc}", file=sys.stderr)
        return 2
    assert address is not None
    with open_channel(address, tls=tls, signing=signing) as channel:
        repository = Repository(channel, args.timeout)
        try:
            return act(args, repository, table, address)
        except grpc.RpcError as exc:
            details = exc.details() or ""
            print(f"aiges service {args.action}: {address}: {exc.code().name} {details}", file=sys.stderr)
            return 1 if details[:5].isdigit() else 2  # the server's answer (an AIGes code), or no server


def act(args: argparse.Namespace, repository: Any, table: dict[str, Any] | None, address: str) -> int:
    if args.action == "list":
        rows = repository.index()
        width = max([len(r.name) for r in rows] + [4])
        for row in rows:
            reason = f"  ({row.reason})" if row.reason else ""
            print(f"{row.name:<{width}}  {row.version or '-':<8}  {row.state}{reason}")
        return 0
    served = {row.name for row in repository.index() if row.state != "UNLOADING"}
    if args.action == "add":
        if args.name in served:
            print(f"aiges service add: {args.name!r} is served already: replace it", file=sys.stderr)
            return 1
        if table is None or "wrapper" not in table:
            print("aiges service add: give the wrapper (a folder, wrapper.py or .so) or --entry", file=sys.stderr)
            return 2
        repository.load(args.name, table)
        print(f"{address}: {args.name} added and serving")
    elif args.action == "replace":
        if args.name not in served:
            print(f"aiges service replace: no service {args.name!r} there: add it", file=sys.stderr)
            return 1
        repository.load(args.name, table)
        print(f"{address}: {args.name} replaced: the new version serves, the old one finishes its calls, then stops")
    else:
        repository.unload(args.name)
        print(f"{address}: {args.name} removed")
    return 0
