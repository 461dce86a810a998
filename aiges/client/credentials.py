"""What a client needs to reach a server that runs safely: TLS (and a client certificate for
mTLS), and an app's key to sign each call with (``[auth] mode = "hmac"``).

    tls = TlsOptions(ca="ca.pem", cert="client.pem", key="client.key")
    key = SigningKey(api_key="...", api_secret="...")
    with Client("shop.example:5090", tls=tls, signing=key) as client: ...

Every call then carries ``authorization``, ``date``, ``host`` and a fresh ``x-aiges-nonce`` as
metadata, signed over the method path (``aiges.protocol.request_signing``). The command line
takes ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name``, ``--app-id``,
``--api-key`` and ``--api-secret``, or the environment variables of the same names
(``AIGES_TLS_CA``, ..., ``AIGES_API_SECRET``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from aiges.protocol.request_signing import SigningKey

__all__ = ["TlsOptions", "SigningKey", "open_channel", "open_aio_channel", "signing_from_env"]


@dataclass(frozen=True)
class TlsOptions:
    """``ca``: the CA certificates to trust (empty: the system's); ``cert`` and ``key``: the
    client certificate for mTLS; ``server_name``: the name to check the server's certificate
    against when it is not the address's host (connecting by IP, say)."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).expanduser().read_bytes() if path else None

        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    @classmethod
    def from_env(cls) -> TlsOptions | None:
        values = {
            name: os.environ.get(f"AIGES_TLS_{name.upper()}", "") for name in ("ca", "cert", "key", "server_name")
        }
        return cls(**values) if any(values.values()) else None


def signing_from_env() -> SigningKey | None:
    key, secret = os.environ.get("AIGES_API_KEY", ""), os.environ.get("AIGES_API_SECRET", "")
    return SigningKey(key, secret, os.environ.get("AIGES_APP_ID", "")) if key and secret else None


def host_of(address: str) -> str:
    """The host part of ``host:port`` (what is signed as ``host``)."""
    target = address.split("///")[-1]
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or target.startswith("[") else target
    return host.strip("[]")


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _Signer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
):
    """Adds a fresh signature to every call's metadata (sync channels)."""

    def __init__(self, key: SigningKey, host: str) -> None:
        self.key = key
        self.host = host

    def _details(self, details: Any) -> _Details:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        signed = self.key.sign_headers(self.host, "POST", method)
        metadata = [*(details.metadata or ()), *signed.items()]
        return _Details(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    address: str,
    *,
    tls: TlsOptions | None = None,
    signing: SigningKey | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to ``address``: TLS when ``tls`` is given, every call signed with ``signing``."""
    if tls is not None:
        channel = grpc.secure_channel(address, tls.credentials(), options=[*options, *tls.options()])
    else:
        channel = grpc.insecure_channel(address, options=list(options))
    if signing is None:
        return channel
    return grpc.intercept_channel(
        channel, _Signer(signing, tls.server_name if tls and tls.server_name else host_of(address))
    )


class _AioSigner(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc]  # grpcio is untyped
):
    """Adds a fresh signature to every call's metadata (asyncio channels)."""

    def __init__(self, key: SigningKey, host: str) -> None:
        self.key = key
        self.host = host

    def _details(self, details: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for name, value in self.key.sign_headers(self.host, "POST", method).items():
            metadata.add(name, value)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def open_aio_channel(
    address: str,
    *,
    tls: TlsOptions | None = None,
    signing: SigningKey | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """``open_channel`` for asyncio."""
    host = tls.server_name if tls and tls.server_name else host_of(address)
    interceptors = [_AioSigner(signing, host)] if signing is not None else None
    if tls is not None:
        return grpc.aio.secure_channel(
            address, tls.credentials(), options=[*options, *tls.options()], interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
