"""``aiges status -c aiges.toml``: a running server's state, as its cmdserver ``status`` answers
it (licences, workers, health, reload and, under the config centre, the config version it runs
and the keys that need a restart)."""

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
        print(json.dumps(json.loads(reply.body), indent=1))
    except json.JSONDecodeError:
        print(f"aiges status: {address} answered no status: {reply.body}", file=sys.stderr)
        return 2
    return 0
