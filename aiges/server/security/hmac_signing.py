"""Checking a signed request (``aiges.protocol.request_signing`` has the format).

In order: the authorization's form (10131), a nonce when ``[auth] require_nonce`` (10139), the
api_key (10132), the signed date against the server's clock (10134, ``[auth] skew_s``), the
signature (10133), the signed host against ``[auth] hosts`` when set (10138); then, for a
signature that signs an ``x-aiges-nonce``, the replay cache (10135): such a signature is accepted
once while its date is within the window (10142 when the cache is full: refused, never let
through twice).

A signature without a nonce (as the platform's clients make them: ``host date request-line``) is
checked for its date and its content, and is not refused for repeating within the skew, as the
platform's gateway does: two calls to one path in one second carry the same signature. Messages
say what was wrong without saying anything about the secret (the signature is compared in
constant time).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import structlog

from aiges.errors import AigesError, ErrorCode
from aiges.protocol.request_signing import (
    NONCE,
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
from aiges.server.security.replay_cache import ReplayCache

log = structlog.get_logger("aiges.auth")

MAX_HEADERS = 16
DEFAULT_REPLAY_BYTES = 32 << 20


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
    nonce: bool
    """The signature signs an ``x-aiges-nonce``: it may be used once."""


def replay_horizon(skew_s: float) -> float:
    """The longest a signature can stay in its window: a date ``skew_s`` ahead, plus ``skew_s``."""
    return 2 * skew_s + 1


class HostNames:
    """``[auth] hosts``: the names a signature may sign as its ``host`` (any port); a name
    ``*.example.com`` stands for every name under example.com. Empty: any host."""

    def __init__(self, names: str) -> None:
        parts = [name.strip().lower().rstrip(".") for name in names.split(",") if name.strip()]
        self.exact = frozenset(name for name in parts if not name.startswith("*."))
        self.suffixes = tuple(name[1:] for name in parts if name.startswith("*."))
        self.any = not parts

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        name = host_name(host).lower().rstrip(".")
        return name in self.exact or (name.endswith(self.suffixes) and bool(self.suffixes))

    def __str__(self) -> str:
        return ", ".join(sorted(self.exact) + [f"*{suffix}" for suffix in self.suffixes])


def host_name(host: str) -> str:
    """``host`` without its port: ``a.example:80`` -> ``a.example``, ``[::1]:80`` -> ``::1``."""
    text = host.strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


class SignatureChecker:
    def __init__(
        self,
        keys: KeysFile,
        skew_s: float,
        clock: Callable[[], float] = time.time,
        *,
        replays: ReplayCache | None = None,
        require_nonce: bool = False,
        hosts: HostNames | None = None,
    ) -> None:
        """``replays``: where nonce'd signatures are remembered (default: this process's memory,
        ``DEFAULT_REPLAY_BYTES``; the host state's region when fronts share a port)."""
        self.keys = keys
        self.skew_s = skew_s
        self.clock = clock
        self.replays = replays or ReplayCache.in_memory(DEFAULT_REPLAY_BYTES, replay_horizon(skew_s))
        self.require_nonce = require_nonce
        self.hosts = hosts or HostNames("")

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
        nonce = NONCE in names
        if self.require_nonce and not nonce:
            raise AigesError(
                ErrorCode.AUTH_NONCE,
                f"sign a fresh {NONCE} header with every request: this server replay-protects every "
                "call ([auth] require_nonce)",
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
        if nonce and not values[NONCE]:
            raise AigesError(ErrorCode.AUTH_MALFORMED, f"the signed {NONCE} is empty")
        now = self.clock()
        signed_at = self._date(values["date"], now)
        expected = sign(app.api_secret, signature_origin(names, values, request_line(request.method, request.path)))
        if not hmac.compare_digest(expected.encode(), authorization.signature.encode()):
            raise AigesError(
                ErrorCode.AUTH_SIGNATURE,
                "the signature does not match the request (its host, date, method and path, "
                "and the api_secret of that api_key)",
            )
        if not self.hosts.allows(values["host"]):
            raise AigesError(
                ErrorCode.AUTH_HOST,
                f"the signed host {host_name(values['host'])!r} is not one this server answers for "
                f"([auth] hosts: {self.hosts})",
            )
        return Verified(app, authorization, signed_at + self.skew_s, nonce)

    def commit(self, verified: Verified) -> App:
        """Spend a nonce'd signature: a second use within the window is a replay (10135). One
        without a nonce is not remembered (the platform's gateway does not either)."""
        if not verified.nonce:
            return verified.app
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
