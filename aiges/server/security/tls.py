"""TLS for the gRPC and HTTP ports (``[tls]``), with certificates rotated without a restart.

The certificate, key and client CA files are looked at (a ``stat``, at most once a second) when
a new connection's handshake begins; when one has changed, all three are read again and, if they
load, new handshakes use them (connections already open keep theirs). Files that do not load (a
rotation caught half written) are reported and the previous ones stay in use, so the next check
tries again.

gRPC: ``grpc.dynamic_ssl_server_credentials``, whose fetcher gRPC calls on each new handshake.
HTTP: one ``ssl.SSLContext`` whose SNI callback (called on every handshake, with or without a
server name) hands the handshake the newest context. With ``client_ca`` both require a client
certificate signed by it (mTLS); a client without one fails the handshake.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

log = structlog.get_logger("aiges.tls")

CHECK_S = 1.0


class TlsError(Exception):
    """The [tls] files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)


@dataclass(frozen=True)
class Loaded:
    """One generation of the files: the bytes gRPC takes and the context HTTP handshakes use."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
            continue
        stamps.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def load(files: TlsFiles) -> Loaded:
    """Read and check the files (the key must match the certificate); raises TlsError."""
    try:
        cert, key = files.cert.read_bytes(), files.key.read_bytes()
        client_ca = files.client_ca.read_bytes() if files.client_ca is not None else None
    except OSError as exc:
        raise TlsError(f"cannot read {exc.filename}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"{files.cert} and {files.key} are not a PEM certificate chain and its key: {exc}") from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(files.client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{files.client_ca} holds no PEM CA certificate: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return Loaded(cert, key, client_ca, context)


class ServerTls:
    """The current files for both ports, refreshed on handshakes (thread-safe: gRPC's fetcher
    runs on gRPC's threads, the SNI callback in the event loop)."""

    def __init__(self, files: TlsFiles, clock: Callable[[], float] = time.monotonic) -> None:
        self.files = files
        self.clock = clock
        self._lock = threading.Lock()
        self.current = load(files)
        self._stamp = _stamp(files.paths())
        self._checked = clock()
        self._grpc_seen: Loaded | None = self.current
        self.http_context = self._http_base()

    @property
    def mutual(self) -> bool:
        return self.files.client_ca is not None

    def refresh(self) -> Loaded:
        """The current files, read again first if one changed since the last look."""
        now = self.clock()
        if now - self._checked < CHECK_S:
            return self.current
        with self._lock:
            if now - self._checked < CHECK_S:
                return self.current
            self._checked = now
            stamp = _stamp(self.files.paths())
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.current = load(self.files)
                except TlsError as exc:
                    log.error("tls files not reloaded; the previous ones stay in use", error=str(exc))
                else:
                    log.info("tls files reloaded", cert=str(self.files.cert))
            return self.current

    # -- gRPC ------------------------------------------------------------------------------------

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self.current),
            self._grpc_fetch,
            require_client_authentication=self.mutual,
        )

    def _grpc_configuration(self, loaded: Loaded) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(loaded.key, loaded.cert)], root_certificates=loaded.client_ca
        )

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC asks before each new handshake: None keeps what it has."""
        try:
            loaded = self.refresh()
            if loaded is self._grpc_seen:
                return None
            self._grpc_seen = loaded
            return self._grpc_configuration(loaded)
        except Exception as exc:  # never let a reload problem break the handshake thread
            log.error("tls reload failed", error=str(exc))
            return None

    # -- HTTP ------------------------------------------------------------------------------------

    def _http_base(self) -> ssl.SSLContext:
        base = load(self.files).context

        def newest(connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
            try:
                connection.context = self.refresh().context
            except Exception as exc:  # the handshake goes on with the context it has
                log.error("tls reload failed", error=str(exc))

        base.sni_callback = newest
        return base
