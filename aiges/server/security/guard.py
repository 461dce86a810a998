"""Who a request is from, and whether that app may call this service: the policy every front's
check (``grpc_auth``, ``http_auth``) asks.

A request is authenticated by its signature (``hmac_signing``) when it carries one, else by its
client certificate when the certificate's common name or a DNS name in it is one an app lists in
``cert_names`` (mTLS), else it is refused (10130). The app must then be allowed for the service:
its ``services`` hold the wrapper's serviceId, or "*" (10136). With several services
(``[[service]]``) that check is made where the call is routed, against the service it names.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
import structlog
from aiohttp import web

from aiges.errors import AigesError, ErrorCode
from aiges.metrics import AUTH_REFUSED
from aiges.protocol.request_signing import DIGEST, body_digest
from aiges.server.security.app_keys import App, KeysFile
from aiges.server.security.hmac_signing import SignatureChecker, SignedRequest

log = structlog.get_logger("aiges.auth")

PER_CALL = "\0per-call"
"""What ``Guard``'s service source answers when a daemon serves several services: the service a
call is for is known once its front has routed it, which then checks the app
(``caller.allowed``), so the check here lets every authenticated app through."""


def grpc_cert_names(context: grpc.aio.ServicerContext) -> list[str]:
    """The verified client certificate's common name and subject alternative names (gRPC)."""
    auth = context.auth_context()
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]


def http_cert_names(request: web.Request) -> list[str]:
    """The verified client certificate's common name and DNS names (HTTP over TLS)."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return []
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names + [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]


class Guard:
    def __init__(self, keys: KeysFile, checker: SignatureChecker, service: Callable[[], str | None]) -> None:
        self.keys = keys
        self.checker = checker
        self.service = service

    def grpc_caller(self, method: str, context: grpc.aio.ServicerContext) -> App:
        """The app a gRPC call is from (metadata ``authorization``, ``date``, ``host``, signed
        over ``POST <method> HTTP/1.1``), or its client certificate's app; raises AigesError."""
        metadata: Mapping[str, str | bytes] = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        if isinstance(authorization, str):

            def header(name: str) -> str | None:
                value = metadata.get(name)
                if value is None and name == "host":
                    # through an HTTP/2 proxy (aiges gateway) the client's host became :authority
                    # and the proxy passes it on here
                    value = metadata.get("x-forwarded-host")
                return value if isinstance(value, str) else None

            verified = self.checker.verify(SignedRequest(authorization, "POST", method, header))
            app = self.checker.commit(verified)
        else:
            app = self._by_certificate(grpc_cert_names(context) if self.keys.current().by_cert_name else ())
        self.check_service(app)
        return app

    async def http_caller(self, request: web.Request) -> App:
        """The app an HTTP request (or WebSocket upgrade) is from: ``host``, ``date`` and
        ``authorization`` in the query (as the platform's clients send them; other signed values
        may be there too, or in headers) or as headers; or its client certificate's app. A signed
        ``digest`` header must match the body."""
        query = request.query
        authorization = query.get("authorization")
        in_query = authorization is not None
        if authorization is None:
            authorization = request.headers.get("Authorization")
        if authorization is None:
            app = self._by_certificate(http_cert_names(request) if self.keys.current().by_cert_name else ())
            self.check_service(app)
            return app

        def header(name: str) -> str | None:
            if in_query and name in query:
                return query.get(name)
            return request.headers.get(name)

        verified = self.checker.verify(SignedRequest(authorization, request.method, request.rel_url.raw_path, header))
        if DIGEST in verified.authorization.headers:
            algorithm, _, sent = request.headers.get(DIGEST, "").partition("=")
            actual = body_digest(await request.read()).partition("=")[2]
            if algorithm.upper() != "SHA-256" or not hmac.compare_digest(sent.encode(), actual.encode()):
                raise AigesError(ErrorCode.AUTH_SIGNATURE, "the body does not match its signed digest (SHA-256=...)")
        app = self.checker.commit(verified)
        self.check_service(app)
        return app

    def _by_certificate(self, names: Iterable[str]) -> App:
        by_name = self.keys.current().by_cert_name
        for name in names:
            app = by_name.get(name)
            if app is not None:
                return app
        raise AigesError(ErrorCode.AUTH_MISSING)

    def check_service(self, app: App) -> None:
        service = self.service()
        if service == PER_CALL or app.allows(service):
            return
        if service is None:
            raise AigesError(
                ErrorCode.AUTH_SERVICE,
                f'the service is still loading: only apps allowed every service ("*") may call; app {app.app_id}',
            )
        raise AigesError(ErrorCode.AUTH_SERVICE, f"app {app.app_id} is not allowed to call service {service!r}")


_REFUSED: dict[tuple[str, int], Any] = {}


def count_refusal(front: str, error: AigesError, peer: str) -> None:
    """Count and log a refusal (the request reached nothing behind the check)."""
    counter = _REFUSED.get((front, error.code))
    if counter is None:
        counter = _REFUSED[(front, error.code)] = AUTH_REFUSED.labels(front, str(error.code))
    counter.inc()
    log.warning("refused", front=front, code=error.code, error=error.message, peer=peer)
