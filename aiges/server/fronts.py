"""The fronts a daemon serves, built over its services: the gRPC server on the service port (xsf,
the native stream, OIP with its model repository, cmdserver, health, reflection), with
``reuseport`` the local socket other fronts of the port pass session calls to, and the HTTP front.
Every front routes each call to its service (``aiges.server.services``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aiges.config import Config
from aiges.protocol import stream_pb2, xsf_pb2  # noqa: F401 - registers the descriptors reflection serves
from aiges.protocol.handle import HandleGenerator, advertised_ipv4
from aiges.server.grpc.forwarding import ForwardedCallers, SessionForwarder
from aiges.server.grpc.native_stream import SERVICE as STREAM_SERVICE
from aiges.server.grpc.native_stream import StreamService
from aiges.server.grpc.oip import OipService
from aiges.server.grpc.toolbox import ToolBoxService
from aiges.server.grpc.xsf import XsfService
from aiges.server.health_service import Health, Phase
from aiges.server.host_state import HostState
from aiges.server.http import HttpFront
from aiges.server.repository import Repository
from aiges.server.security import Security
from aiges.server.service import Service
from aiges.server.services import Services

log = structlog.get_logger("aiges.server")

MAX_PENDING_CALLS = 1 << 16  # calls queued before the server takes them: metadata only, the message is read later


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@dataclass
class Fronts:
    """What ``bind`` made: the gRPC server on the service port, and the address it serves; with
    fronts sharing the port, the local server other fronts pass session calls to
    (``grpc.forwarding``)."""

    server: grpc.aio.Server
    port: int
    ip: str
    address: str
    local: grpc.aio.Server | None = None

    async def start(self) -> None:
        await self.server.start()
        if self.local is not None:
            await self.local.start()

    async def stop(self, grace_s: float) -> None:
        if self.local is not None:
            await self.local.stop(grace_s)
        await self.server.stop(grace_s)


def bind(config: Config, security: Security) -> Fronts | None:
    """The gRPC server on the service port, bound (None after logging why it cannot be)."""
    megabyte = 1 << 20
    server = grpc.aio.server(
        interceptors=security.grpc_interceptors(),
        options=[
            ("grpc.max_receive_message_length", config.service.maxreceive * megabyte),
            ("grpc.max_send_message_length", config.service.maxsend * megabyte),
            # Off unless asked for: a second server on a taken port must fail, not share it.
            ("grpc.so_reuseport", int(config.service.reuseport)),
            # Calls that arrive faster than the server takes them wait in gRPC's queue, which by
            # default cancels beyond 1000: the licences, not the transport, must limit a burst.
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ],
    )
    host = config.service.host
    try:
        port = security.add_grpc_port(server, listen_address(host, config.service.port))
    except RuntimeError as exc:
        log.error("cannot listen", address=listen_address(host, config.service.port), error=str(exc))
        return None
    ip = advertised_ipv4(host)
    return Fronts(server, port, ip, config.registry.address or f"{ip}:{port}")


@dataclass
class Parts:
    """What the fronts are built over."""

    config: Config
    security: Security
    services: Services
    handles: HandleGenerator
    health: Health
    repository: Repository
    snapshot: Callable[[], dict[str, Any]]
    schema: Callable[[str], dict[str, Any] | None]
    reload: Callable[[str], Awaitable[dict[str, Any]]]

    def model_ready(self, service: Service) -> bool:
        """A service's readiness (OIP ModelReady): the server serves, and so does the service."""
        return self.health.phase is Phase.SERVING and service.ready()

    def ready(self) -> bool:
        return self.health.serving


def add_grpc_services(fronts: Fronts, parts: Parts, host: HostState | None) -> None:
    config, security, services, handles = parts.config, parts.security, parts.services, parts.handles
    debug = config.log.level == "debug"
    peer = f"{fronts.ip}:{fronts.port}"
    forwarder = None
    if host is not None:
        forwarder = SessionForwarder(host, config.service.maxreceive << 20)
        local = XsfService(services, handles, peer, ForwardedCallers(), debug, front="xsf-local")
        fronts.local = local_server(config, host, local)
    fronts.server.add_generic_rpc_handlers(
        (
            XsfService(services, handles, peer, security.callers, debug, forwarder).rpc_handlers(),
            StreamService(services, handles, security.callers).rpc_handlers(),
            ToolBoxService(parts.snapshot, parts.schema, parts.reload).rpc_handlers(),
            OipService(
                services, handles, parts.ready, security.callers, parts.model_ready, parts.repository
            ).rpc_handlers(),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(parts.health.servicer, fronts.server)
    reflection.enable_server_reflection(
        (
            xsf_pb2.DESCRIPTOR.services_by_name["XsfCall"].full_name,
            xsf_pb2.DESCRIPTOR.services_by_name["ToolBox"].full_name,
            STREAM_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        fronts.server,
    )


def local_server(config: Config, host: HostState, xsf: XsfService) -> grpc.aio.Server:
    """The front's local socket, where the other fronts of the port pass on the calls of
    sessions this front holds (no caller check: only local fronts can reach it)."""
    megabyte = 1 << 20
    limits = [
        ("grpc.max_receive_message_length", config.service.maxreceive * megabyte),
        ("grpc.max_send_message_length", config.service.maxsend * megabyte),
    ]
    local = grpc.aio.server(options=limits)
    local.add_generic_rpc_handlers((xsf.rpc_handlers(),))
    path = Path(host.socket_path)
    path.unlink(missing_ok=True)  # a dead front's, in the slot this one took
    local.add_insecure_port(f"unix:{path}")
    return local


async def start_http(parts: Parts, status: Callable[[], Mapping[str, Any]]) -> HttpFront | None | bool:
    """The HTTP front, when configured; False when its address cannot be bound."""
    config, security = parts.config, parts.security
    listen = config.http_listen
    if not listen:
        return None
    front = HttpFront(
        parts.services,
        parts.handles,
        parts.ready,
        model_ready=parts.model_ready,
        repository=parts.repository,
        cors=config.http.cors,
        max_body_mb=config.service.maxreceive,
        status=status,
        middlewares=security.http_middlewares(),
        ssl_context=security.http_ssl(),
    )
    try:
        await front.start(listen, reuse_port=config.service.reuseport)
    except (OSError, ValueError) as exc:
        log.error("cannot serve http", address=listen, error=str(exc))
        await front.stop()
        return False
    return front
