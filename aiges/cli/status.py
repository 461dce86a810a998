"""``aiges status -c aiges.toml``: a running server's state, as its cmdserver ``status`` answers
it (licences, workers, health, reload and, under the config centre, the config version it runs
and the keys that need a restart), with each service it serves under ``services`` (those being
added, and old versions finishing after a replace or a remove, too). ``--table``: the server's
health and one line per service (version, state, health, workers, licences, sessions, GPUs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc

from aiges.cli.common import add_client_options, running_server
from aiges.config import ConfigError
from aiges.protocol import xsf_pb2_grpc
from aiges.protocol.xsf_pb2 import Request


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help="print a running server's state (JSON)")
    parser.add_argument("-c", "--config", help="aiges.toml of the server (its host and port)")
    parser.add_argument("--addr", help="HOST:PORT of the server (instead of --config)")
    parser.add_argument("--section", default=None, help="the config's service section (default: svcName)")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--table", action="store_true", help="one line per service instead of JSON")
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    from aiges.client.credentials import open_channel

    if args.addr is None and not args.config:
        print("aiges status: give -c aiges.toml or --addr HOST:PORT", file=sys.stderr)
        return 2
    try:
        address, tls, signing = running_server(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"aiges status: {exc}", file=sys.stderr)
        return 2
    assert address is not None
    with open_channel(address, tls=tls, signing=signing) as channel:
        try:
            stubs: Any = xsf_pb2_grpc  # generated without annotations
            reply = stubs.ToolBoxStub(channel).cmdserver(
                Request(query=json.dumps({"cmd": "status"})), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"aiges status: {address}: {exc.code().name} {exc.details()}", file=sys.stderr)
            return 2
    try:
        state = json.loads(reply.body)
        print(render(state) if args.table else json.dumps(state, indent=1))
    except json.JSONDecodeError:
        print(f"aiges status: {address} answered no status: {reply.body}", file=sys.stderr)
        return 2
    return 0


def render(state: dict[str, Any]) -> str:
    lines = [
        f"{state['address']}  {state['health']}  phase {state['phase']}  pid {state['pid']}  "
        f"up {state['uptime_s']:.0f} s  workers {state['workers_ready']}/{state['workers']}  "
        f"licences {state['licences_used']}/{state['licences_total']}  sessions {state['sessions']}"
    ]
    services = state.get("services", [])
    width = max([len(s["name"] or "?") for s in services] + [7])
    lines.append(
        f"{'SERVICE':<{width}}  {'VERSION':<8}  {'STATE':<8}  {'HEALTH':<11}  WORKERS  LICENCES  SESSIONS  GPUS"
    )
    for s in services:
        gpus = ",".join(s["gpus"]) or "-"
        lines.append(
            f"{s['name'] or '?':<{width}}  {s['version'] or '-':<8}  {s['state']:<8}  {s['health']:<11}  "
            f"{s['workers_ready']}/{s['workers']:<5}  {s['licences_used']}/{s['licences_total']:<6}  "
            f"{s['sessions']:<8}  {gpus}"
        )
    return "\n".join(lines)
