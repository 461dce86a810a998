"""``aiges health``: ask a server's grpc.health.v1 service; exit 0 when SERVING, 1 otherwise.

What the Docker images' HEALTHCHECK runs (Kubernetes uses its native gRPC probe instead).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("health", help="check a server's gRPC health; exit 0 when SERVING")
    parser.add_argument("--addr", default="127.0.0.1:5090", help="HOST:PORT (default 127.0.0.1:5090)")
    parser.add_argument("--service", default="", help="the service name to ask about (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0)


def run(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{args.addr}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.addr}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
