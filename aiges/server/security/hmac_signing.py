"""Checking a signed request (``aiges.protocol.request_signing`` has the format).

In order: the authorization's form (10131), the api_key (10132), the signed date against the
server's clock (10134, ``[auth] skew_s``), the signature (10133), then the replay cache (10135):
a signature is accepted once while its date is within the window. Messages say what was wrong
without saying anything about the secret (the signature is compared in constant time).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import structlog

from aiges.errors import AigesError, ErrorCode
from aiges.protocol.request_signing import (
    PLATFORM_HEADERS,
    REQUEST_LINE,
    Authorization,
    MalformedAuthorization,
    parse_authorization,
    request_line,
    sign,
    signature_origin,
)
from aiges.server.security.app_keys import App, KeysFile

log = structlog.get_logger("aiges.auth")

REPLAY_LIMIT = 1_000_000
"""Signatures remembered at most (about 100 bytes each); past it the oldest are forgotten first."""
MAX_HEADERS = 16


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a front saw: the authorization, and the values of the headers it may sign."""

    authorization: str
    method: str
    path: str
    header: Callable[[str], str | None]
    """A signed header's value by its lower-case name (``host``, ``date``, ``digest``...)."""


@dataclass(frozen=True, slots=True)
class Verified:
    app: App
    authorization: Authorization
    expires: float


class ReplayCache:
    """Signatures seen, each kept until its date leaves the window (bounded by REPLAY_LIMIT)."""

    def __init__(self, limit: int = REPLAY_LIMIT) -> None:
        self.limit = limit
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._warned = False

    def __len__(self) -> int:
        return len(self._expiry)

    def first_use(self, signature: bytes, expires: float, now: float) -> bool:
        """Record ``signature``; False if it was already recorded and has not expired."""
        heap = self._heap
        while heap and (heap[0][0] <= now or len(heap) >= self.limit):
            expiry, old = heapq.heappop(heap)
            if self._expiry.get(old) == expiry:
                del self._expiry[old]
            if expiry > now and not self._warned:
                self._warned = True
                log.warning("replay cache full: the oldest signatures are forgotten early", limit=self.limit)
        if self._expiry.get(signature, 0.0) > now:
            return False
        self._expiry[signature] = expires
        heapq.heappush(heap, (expires, signature))
        return True


class SignatureChecker:
    def __init__(self, keys: KeysFile, skew_s: float, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.skew_s = skew_s
        self.clock = clock
        self.replays = ReplayCache()

    def verify(self, request: SignedRequest) -> Verified:
        """The app whose secret signed ``request``; raises AigesError (401 codes). The signature
        is not yet spent: ``commit`` does that once every other check has passed."""
        try:
            authorization = parse_authorization(request.authorization)
        except MalformedAuthorization as exc:
            raise AigesError(ErrorCode.AUTH_MALFORMED, str(exc)) from None
        names = authorization.headers
        if not set(PLATFORM_HEADERS) <= set(names) or len(names) > MAX_HEADERS or len(set(names)) != len(names):
            raise AigesError(
                ErrorCode.AUTH_MALFORMED, "the signed headers must name host, date and request-line, each once"
            )
        app = self.keys.current().by_key.get(authorization.api_key)
        if app is None:
            raise AigesError(ErrorCode.AUTH_UNKNOWN_KEY, "unknown api_key")
        values: dict[str, str] = {}
        for name in names:
            if name == REQUEST_LINE:
                continue
            value = request.header(name)
            if value is None:
                raise AigesError(ErrorCode.AUTH_MALFORMED, f"the signed header {name!r} is not in the request")
            values[name] = value
        now = self.clock()
        signed_at = self._date(values["date"], now)
        expected = sign(app.api_secret, signature_origin(names, values, request_line(request.method, request.path)))
        if not hmac.compare_digest(expected.encode(), authorization.signature.encode()):
            raise AigesError(
                ErrorCode.AUTH_SIGNATURE,
                "the signature does not match the request (its host, date, method and path, "
                "and the api_secret of that api_key)",
            )
        return Verified(app, authorization, signed_at + self.skew_s)

    def commit(self, verified: Verified) -> App:
        """Spend the signature: a second use within the window is a replay (10135)."""
        try:
            key = base64.b64decode(verified.authorization.signature, validate=True)
        except (binascii.Error, ValueError):
            key = verified.authorization.signature.encode()
        if not self.replays.first_use(key, verified.expires, self.clock()):
            raise AigesError(ErrorCode.AUTH_REPLAY, "this signature was already used: sign each request anew")
        return verified.app

    def _date(self, text: str, now: float) -> float:
        try:
            signed_at = parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            raise AigesError(ErrorCode.AUTH_DATE, "the signed date is not an RFC 1123 date") from None
        if abs(now - signed_at) > self.skew_s:
            raise AigesError(
                ErrorCode.AUTH_DATE,
                f"the signed date is {abs(now - signed_at):.0f} s from the server's clock; "
                f"at most {self.skew_s:g} s is allowed",
            )
        return signed_at
