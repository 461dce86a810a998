"""``aiges reload -c aiges.toml``: reload a running server's wrapper without dropping a call.

The server reads its config file again and starts new workers with the wrapper and ``[wrapper]``
it names; new calls and sessions go to them as they become ready, while the old workers finish
theirs (within ``[aiges] drain_timeout_ms``) and stop. Sending the server SIGHUP does the same.
Exits 0 once the new workers serve, 1 when the reload failed (the old workers serve on; the reason
is printed), 2 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc

from aiges.cli.common import add_client_options, running_server
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("reload", help="reload a running server's wrapper without dropping a call")
    parser.add_argument("-c", "--config", help="aiges.toml of the server (its host and port)")
    parser.add_argument("--addr", help="HOST:PORT of the server (instead of --config)")
    parser.add_argument("--section", default=None, help="the config's service section (default: svcName)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the new workers (default 900)")
    parser.add_argument("--service", default="", help="reload this service only (default: every service)")
    parser.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    from aiges.client.credentials import open_channel
    from aiges.config import ConfigError

    if args.addr is None and not args.config:
        print("aiges reload: give -c aiges.toml or --addr HOST:PORT", file=sys.stderr)
        return 2
    try:
        address, tls, signing = running_server(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"aiges reload: {exc}", file=sys.stderr)
        return 2
    assert address is not None
    with open_channel(address, tls=tls, signing=signing) as channel:
        try:
            reply = ToolBoxStub(channel).cmdserver(
                Request(query=json.dumps({"cmd": "reload", "service": args.service})), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"aiges reload: {address}: {exc.code().name} {exc.details()}", file=sys.stderr)
            return 2
    try:
        answer = json.loads(reply.body)
    except json.JSONDecodeError:
        print(f"aiges reload: {address} does not reload: {reply.body}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer))
    elif answer.get("ok"):
        print(
            f"{address}: reloaded: generation {answer['generation']}, {answer['workers']} workers ready in "
            f"{answer['ms']} ms; {answer['retiring']} old workers finish their calls and sessions, then stop"
        )
    else:
        print(f"{address}: reload failed, the old workers serve on: {answer.get('error')}", file=sys.stderr)
    return 0 if answer.get("ok") else 1
