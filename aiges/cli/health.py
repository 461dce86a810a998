"""``aiges health``: ask a server's grpc.health.v1 service; exit 0 when SERVING, 1 otherwise.

What the Docker images' HEALTHCHECK runs, as ``aiges health -c /home/aiges/aiges.toml``: the
address then comes from the config that the server itself serves, so an image that changes the
port stays healthy (Kubernetes uses its native gRPC probe instead, or this command when the port
has TLS). With a config that has [tls] it connects over TLS, trusting ``--tls-ca`` (or
AIGES_TLS_CA), and under mTLS presents the server's own certificate unless ``--tls-cert`` names
another. Health needs no credentials, even with ``[auth] mode = "hmac"``.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.cli.common import add_client_options, running_server
from aiges.config import ConfigError

DEFAULT_ADDR = "127.0.0.1:5090"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("health", help="check a server's gRPC health; exit 0 when SERVING")
    parser.add_argument("--addr", help=f"HOST:PORT (default: from --config, else {DEFAULT_ADDR})")
    parser.add_argument("-c", "--config", help="aiges.toml: ask the server it configures, on this machine")
    parser.add_argument("--section", default=None, help="the config's service section (default: svcName)")
    parser.add_argument("--service", default="", help="the service name to ask about (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0)
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    from aiges.client.credentials import open_channel

    try:
        address, tls, _ = running_server(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"aiges: {exc}", file=sys.stderr)
        return 1  # a HEALTHCHECK knows 0 and 1 only
    address = address or DEFAULT_ADDR
    with open_channel(address, tls=tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{address}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
