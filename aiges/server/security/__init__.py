"""Running safely: TLS and mTLS on both ports, callers authenticated as the AI platform signs
them, admin operations kept to admin apps, CORS, per-app limits.

    tls.py           [tls]: gRPC credentials and the HTTP SSLContext; files reloaded when they change
    app_keys.py      [auth] keys: the apps, read again when the file changes
    hmac_signing.py  a signed request checked: form, nonce, key, date, signature, host, replay
    replay_cache.py  nonce'd signatures remembered in fixed memory (the host's, with reuseport)
    guard.py         who a request is from (signature or client certificate), may it call this service
    grpc_auth.py     the gRPC interceptor;  http_auth.py  the HTTP middleware;  cors.py  [http] cors
    caller.py        the calling app, handed to the fronts for the call's context; the admin check

The apps' own limits ([[app]] rate and max_sessions) are the engine's admission
(``aiges.engine.admission``), applied from the caller each call's context carries.

``Security`` is what the server's phases ask: with ``[auth] mode = "none"`` and no ``[tls]`` it
adds nothing at all to a request's path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from aiohttp.typedefs import Middleware

from aiges.config import Config
from aiges.server.host_state import HostState
from aiges.server.security.app_keys import KeysError, KeysFile
from aiges.server.security.caller import GrpcCallers
from aiges.server.security.grpc_auth import AuthInterceptor
from aiges.server.security.guard import Guard
from aiges.server.security.hmac_signing import HostNames, SignatureChecker, replay_horizon
from aiges.server.security.http_auth import auth_middleware
from aiges.server.security.replay_cache import ReplayCache
from aiges.server.security.tls import ServerTls, TlsError, TlsFiles

log = structlog.get_logger("aiges.server")

LOOPBACK = ("127.", "::1", "[::1]", "localhost")


def replay_cache(config: Config, host: HostState | None) -> ReplayCache:
    """``[auth] replay_mb`` of memory: this process's, or the host's region shared by its fronts."""
    horizon = replay_horizon(config.auth.skew_s)
    if host is None:
        return ReplayCache.in_memory(config.auth.replay_mb << 20, horizon)
    buffer, stripes = host.replay_region()
    return ReplayCache(buffer, stripes, host.salt, horizon)


class SecurityError(Exception):
    """[tls] or [auth] cannot be used as configured; the message is the line the user sees."""


@dataclass
class Security:
    tls: ServerTls | None = None
    guard: Guard | None = None
    callers: GrpcCallers = field(default_factory=GrpcCallers)
    """The app each gRPC call in progress was authenticated as (read by the fronts)."""
    service_id: Callable[[], str | None] = field(default=lambda: None)
    """The service callers must be allowed for (the wrapper's serviceId, once it is loaded)."""

    @classmethod
    def from_config(cls, config: Config, host: HostState | None = None) -> Security:
        """``host``: the state shared with the other fronts of the port (reuseport), which then
        keeps the replay cache."""
        security = cls()
        if config.tls.cert:
            client_ca = config.relative_path(config.tls.client_ca) if config.tls.client_ca else None
            files = TlsFiles(config.relative_path(config.tls.cert), config.relative_path(config.tls.key), client_ca)
            try:
                security.tls = ServerTls(files)
            except TlsError as exc:
                raise SecurityError(f"[tls]: {exc}") from None
        if config.auth.mode == "hmac":
            keys = KeysFile(config.relative_path(config.auth.keys))
            try:
                keys.load()
            except KeysError as exc:
                raise SecurityError(f"[auth] keys: {exc}") from None
            checker = SignatureChecker(
                keys,
                config.auth.skew_s,
                replays=replay_cache(config, host),
                require_nonce=config.auth.require_nonce,
                hosts=HostNames(config.auth.hosts),
            )
            security.guard = Guard(keys, checker, lambda: security.service_id())
            log.info(
                "callers authenticated",
                mode="hmac",
                keys=str(keys.path),
                apps=len(keys.keys.apps),
                replay_cache="host" if host is not None else "process",
                replay_capacity=checker.replays.capacity,
                require_nonce=config.auth.require_nonce,
                hosts=str(checker.hosts) or "any",
            )
        elif not config.service.host.startswith(LOOPBACK):
            log.warning(
                "no caller authentication ([auth] mode = none): anyone who reaches the port can call the model "
                "and its admin operations (README: Running it safely)",
                host=config.service.host,
            )
        return security

    # -- gRPC ------------------------------------------------------------------------------------

    def grpc_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [AuthInterceptor(self.guard, self.callers)] if self.guard is not None else []

    def add_grpc_port(self, server: grpc.aio.Server, address: str) -> int:
        if self.tls is None:
            return int(server.add_insecure_port(address))
        log.info("tls", port="grpc", mutual=self.tls.mutual, cert=str(self.tls.files.cert))
        return int(server.add_secure_port(address, self.tls.grpc_credentials()))

    # -- the engine and HTTP ------------------------------------------------------------------------

    def http_middlewares(self) -> list[Middleware]:
        return [auth_middleware(self.guard)] if self.guard is not None else []

    def http_ssl(self) -> Any:
        return self.tls.http_context if self.tls is not None else None
