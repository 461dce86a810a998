"""Signed requests as the AI platform signs them (HMAC-SHA256 over chosen headers), for both sides.

The platform's clients (the original SDK's ``ne_utils.build_auth_request_url``) send three values,
as URL query parameters or as headers of the same names:

    host           the host the client addressed (no port)
    date           an RFC 1123 date: ``Mon, 02 Jan 2006 15:04:05 GMT``
    authorization  base64 of  api_key="K", algorithm="hmac-sha256", headers="host date request-line",
                   signature="S"  (as a header, the same text may also come unencoded)

where S is base64(HMAC-SHA256(secret, origin)) and the origin is one line per name in
``headers``, in that order: ``request-line`` is ``<METHOD> <path> HTTP/1.1`` (the path without
the query), any other name ``<name>: <value>``:

    host: example.com
    date: Mon, 02 Jan 2006 15:04:05 GMT
    POST /v1/private/echo HTTP/1.1

gRPC callers send ``authorization``, ``date`` and ``host`` as metadata and sign the method path
as a POST (``POST /utils.XsfCall/call HTTP/1.1``). More headers may be signed (``digest: SHA-256=
<base64 of the body's SHA-256>`` ties an HTTP body to its signature; aiges' own clients sign a
random ``x-aiges-nonce`` so that two calls in the same second never share a signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlencode, urlsplit

ALGORITHM = "hmac-sha256"
REQUEST_LINE = "request-line"
PLATFORM_HEADERS = ("host", "date", REQUEST_LINE)
NONCE = "x-aiges-nonce"
DIGEST = "digest"
_FIELD = re.compile(r'\s*([A-Za-z_]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


def http_date(timestamp: float | None = None) -> str:
    """An RFC 1123 date in GMT, as the platform's clients send it."""
    return formatdate(timestamp, usegmt=True)


def request_line(method: str, path: str) -> str:
    return f"{method.upper()} {path} HTTP/1.1"


def signature_origin(headers: Sequence[str], values: Mapping[str, str], line: str) -> str:
    """The text that is signed: one line per signed header name, in order."""
    return "\n".join(line if name == REQUEST_LINE else f"{name}: {values.get(name, '')}" for name in headers)


def sign(secret: str, origin: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()


def body_digest(body: bytes) -> str:
    """The value of a ``digest`` header for ``body``."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


@dataclass(frozen=True)
class Authorization:
    api_key: str
    algorithm: str
    headers: tuple[str, ...]
    signature: str

    def text(self) -> str:
        return (
            f'api_key="{self.api_key}", algorithm="{self.algorithm}", '
            f'headers="{" ".join(self.headers)}", signature="{self.signature}"'
        )

    def encoded(self) -> str:
        return base64.b64encode(self.text().encode()).decode()


class MalformedAuthorization(ValueError):
    """The authorization value cannot be read; the message says what is wrong with its form."""


def parse_authorization(value: str) -> Authorization:
    """Read an authorization value: base64 (as in the query) or the plain text (as a header may
    carry it). Raises MalformedAuthorization."""
    text = value.strip()
    if not text.startswith("api_key"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise MalformedAuthorization("authorization is neither base64 nor api_key=... text") from None
    fields: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _FIELD.match(text, position)
        if match is None or match.end() == position:
            raise MalformedAuthorization('authorization must be name="value" pairs separated by commas')
        fields[match.group(1)] = match.group(2)
        position = match.end()
    missing = [name for name in ("api_key", "algorithm", "headers", "signature") if not fields.get(name)]
    if missing:
        raise MalformedAuthorization(f"authorization has no {', '.join(missing)}")
    if fields["algorithm"].lower() != ALGORITHM:
        raise MalformedAuthorization(f"algorithm must be {ALGORITHM}")
    headers = tuple(fields["headers"].lower().split())
    return Authorization(fields["api_key"], ALGORITHM, headers, fields["signature"])


@dataclass(frozen=True)
class SigningKey:
    """An app's credentials, on the client side."""

    api_key: str
    api_secret: str
    app_id: str = ""

    def sign_headers(
        self,
        host: str,
        method: str,
        path: str,
        *,
        date: str | None = None,
        extra: Mapping[str, str] | None = None,
        nonce: bool = True,
    ) -> dict[str, str]:
        """The values to send (``host``, ``date``, ``authorization`` and any ``extra`` signed
        headers, plus a fresh nonce unless ``nonce`` is False): as headers or gRPC metadata."""
        values = {"host": host, "date": date or http_date(), **{k.lower(): v for k, v in (extra or {}).items()}}
        if nonce:
            values[NONCE] = secrets.token_hex(12)
        names = (*PLATFORM_HEADERS, *(name for name in values if name not in PLATFORM_HEADERS))
        signature = sign(self.api_secret, signature_origin(names, values, request_line(method, path)))
        values["authorization"] = Authorization(self.api_key, ALGORITHM, names, signature).encoded()
        return values

    def sign_url(self, url: str, method: str = "POST", *, date: str | None = None, nonce: bool = False) -> str:
        """``url`` with ``host``, ``date`` and ``authorization`` query parameters, exactly as the
        platform's ``build_auth_request_url`` makes it (with ``nonce``, one more parameter)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        values = self.sign_headers(host, method, parts.path or "/", date=date, nonce=nonce)
        return url + ("&" if parts.query else "?") + urlencode(values)
