"""Signed requests: the platform's form, what the checker accepts and refuses (with which code),
which signatures are replay-protected, ``[auth] hosts`` and ``require_nonce``, the keys file and
the per-app token bucket (the replay cache itself: test_replay_cache.py)."""

from __future__ import annotations

import base64
import contextlib
import os
import string
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiges.errors import AigesError, ErrorCode
from aiges.protocol.request_signing import (
    Authorization,
    MalformedAuthorization,
    SigningKey,
    body_digest,
    parse_authorization,
    request_line,
    sign,
    signature_origin,
)
from aiges.server.security.app_keys import App, KeysError, KeysFile, parse_keys
from aiges.server.security.hmac_signing import HostNames, SignatureChecker, SignedRequest, host_name

NOW = 1_800_000_000.0
KEYS = """
[[app]]
app_id = "a1"
api_key = "key-1"
api_secret = "secret-1"

[[app]]
app_id = "ops"
api_key = "key-ops"
api_secret = "secret-ops"
services = ["echo"]
admin = true
max_sessions = 2
rate = 5
cert_names = ["ops.example"]
"""


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checker(tmp_path) -> SignatureChecker:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keys = KeysFile(path)
    keys.load()
    return SignatureChecker(keys, 300, clock=Clock())


def request_of(values: dict[str, str], method: str = "POST", path: str = "/v1/private/echo") -> SignedRequest:
    return SignedRequest(values["authorization"], method, path, values.get)


def signed(key: str = "key-1", secret: str = "secret-1", **changes) -> dict[str, str]:
    values = SigningKey(key, secret).sign_headers(
        "example.com", "POST", "/v1/private/echo", date=formatdate(NOW, usegmt=True)
    )
    values.update(changes)
    return values


def refused(checker: SignatureChecker, request: SignedRequest) -> int:
    with pytest.raises(AigesError) as caught:
        checker.commit(checker.verify(request))
    return caught.value.code


def test_the_platforms_form():
    """What ne_utils.build_auth_request_url sends: host, date and a base64 authorization over
    'host: H\\ndate: D\\nPOST /path HTTP/1.1'."""
    date = "Mon, 02 Jan 2006 15:04:05 GMT"
    url = SigningKey("key-1", "secret-1").sign_url("http://example.com:8080/v1/private/echo", date=date)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["host"] == "example.com" and query["date"] == date
    origin = f"host: example.com\ndate: {date}\nPOST /v1/private/echo HTTP/1.1"
    text = base64.b64decode(query["authorization"]).decode()
    assert text == (
        f'api_key="key-1", algorithm="hmac-sha256", headers="host date request-line", '
        f'signature="{sign("secret-1", origin)}"'
    )
    assert parse_authorization(text) == parse_authorization(query["authorization"])


def test_a_signed_request_is_accepted_once(checker):
    values = signed()
    assert checker.commit(checker.verify(request_of(values))).app_id == "a1"
    assert refused(checker, request_of(values)) == ErrorCode.AUTH_REPLAY


def platform_signed(host: str = "example.com", path: str = "/v1/private/echo") -> dict[str, str]:
    """As ne_utils.build_auth_request_url signs: host, date, request-line, no nonce."""
    return SigningKey("key-1", "secret-1").sign_headers(
        host, "POST", path, date=formatdate(NOW, usegmt=True), nonce=False
    )


def test_a_signature_without_a_nonce_may_repeat_within_the_skew(checker):
    """Two calls to one path in one second carry the same signature: both are served, as the
    platform's gateway serves them; the date and the content are still checked."""
    values = platform_signed()
    for _ in range(5):
        assert checker.commit(checker.verify(request_of(values))).app_id == "a1"
    assert refused(checker, request_of(values, path="/v1/private/other")) == ErrorCode.AUTH_SIGNATURE
    checker.clock.now = NOW + 301
    assert refused(checker, request_of(values)) == ErrorCode.AUTH_DATE
    assert checker.replays.entries(NOW) == 0, "a signature without a nonce takes no room in the cache"


def test_require_nonce_refuses_signatures_without_one(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keys = KeysFile(path)
    keys.load()
    strict = SignatureChecker(keys, 300, clock=Clock(), require_nonce=True)
    assert refused(strict, request_of(platform_signed())) == ErrorCode.AUTH_NONCE
    assert strict.commit(strict.verify(request_of(signed()))).app_id == "a1"
    values = SigningKey("key-1", "secret-1").sign_headers(
        "example.com",
        "POST",
        "/v1/private/echo",
        date=formatdate(NOW, usegmt=True),
        nonce=False,
        extra={"x-aiges-nonce": ""},
    )
    assert refused(strict, request_of(values)) == ErrorCode.AUTH_MALFORMED


@pytest.mark.parametrize(
    ("hosts", "host", "allowed"),
    [
        ("", "anything.example", True),
        ("api.example.com", "api.example.com", True),
        ("api.example.com", "API.Example.com:443", True),
        ("api.example.com", "other.example.com", False),
        ("api.example.com, *.internal", "svc.ns.internal", True),
        ("*.internal", "internal", False),
        ("127.0.0.1", "127.0.0.1:5090", True),
        ("::1", "[::1]:5090", True),
    ],
)
def test_hosts_a_signature_may_name(tmp_path, hosts, host, allowed):
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keys = KeysFile(path)
    keys.load()
    checker = SignatureChecker(keys, 300, clock=Clock(), hosts=HostNames(hosts))
    values = platform_signed(host=host)
    if allowed:
        assert checker.commit(checker.verify(request_of(values))).app_id == "a1"
    else:
        assert refused(checker, request_of(values)) == ErrorCode.AUTH_HOST
        wrong = SigningKey("key-1", "wrong").sign_headers(
            host, "POST", "/v1/private/echo", date=formatdate(NOW, usegmt=True), nonce=False
        )
        assert refused(checker, request_of(wrong)) == ErrorCode.AUTH_SIGNATURE, "a forger learns nothing of hosts"


def test_host_names_without_their_port():
    assert [host_name(h) for h in ("a.example", "a.example:80", "[::1]:80", "::1")] == [
        "a.example",
        "a.example",
        "::1",
        "::1",
    ]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (lambda: request_of(signed(secret="wrong")), ErrorCode.AUTH_SIGNATURE),
        (lambda: request_of(signed(), path="/v1/private/other"), ErrorCode.AUTH_SIGNATURE),
        (lambda: request_of(signed(), method="GET"), ErrorCode.AUTH_SIGNATURE),
        (lambda: request_of(signed(host="evil.example")), ErrorCode.AUTH_SIGNATURE),
        (lambda: request_of(signed(key="key-9")), ErrorCode.AUTH_UNKNOWN_KEY),
        (lambda: request_of(signed(authorization="not base64!")), ErrorCode.AUTH_MALFORMED),
        (lambda: request_of(signed(date="yesterday")), ErrorCode.AUTH_DATE),
    ],
)
def test_refusals_and_their_codes(checker, request_, code):
    assert refused(checker, request_()) == code


def test_dates_outside_the_skew_are_refused(checker):
    for offset in (-301, 301):
        values = SigningKey("key-1", "secret-1").sign_headers(
            "h", "POST", "/p", date=formatdate(NOW + offset, usegmt=True)
        )
        assert refused(checker, request_of(values, path="/p")) == ErrorCode.AUTH_DATE
    values = SigningKey("key-1", "secret-1").sign_headers("h", "POST", "/p", date=formatdate(NOW - 299, usegmt=True))
    assert checker.commit(checker.verify(request_of(values, path="/p"))).app_id == "a1"


def test_the_signed_headers_must_include_the_platforms_three(checker):
    names = ("host", "request-line")
    values = {"host": "h", "date": formatdate(NOW, usegmt=True)}
    signature = sign("secret-1", signature_origin(names, values, request_line("POST", "/p")))
    values["authorization"] = Authorization("key-1", "hmac-sha256", names, signature).encoded()
    assert refused(checker, request_of(values, path="/p")) == ErrorCode.AUTH_MALFORMED


def test_the_message_says_nothing_about_the_secret(checker):
    with pytest.raises(AigesError) as caught:
        checker.verify(request_of(signed(secret="secret-2")))
    assert "secret-1" not in caught.value.message and sign("secret-1", "") not in caught.value.message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()))
def test_any_authorization_text_is_read_or_refused_as_malformed(text):
    with contextlib.suppress(MalformedAuthorization):
        parse_authorization(text)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["host", "date", "authorization", "path", "method"]), st.data())
def test_a_tampered_part_is_always_refused(tmp_path_factory, part, data):
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    path.write_text(KEYS)
    keys = KeysFile(path)
    keys.load()
    checker = SignatureChecker(keys, 300, clock=Clock())
    values, method, target = signed(), "POST", "/v1/private/echo"
    if part == "path":
        target = "/" + data.draw(st.text(string.ascii_letters + "/", min_size=1)) + "x"
    elif part == "method":
        method = data.draw(st.sampled_from(["GET", "PUT", "DELETE"]))
    elif part == "authorization":
        parsed = parse_authorization(values["authorization"])
        index = data.draw(st.integers(0, len(parsed.signature) - 2))
        flipped = "A" if parsed.signature[index] != "A" else "B"
        signature = parsed.signature[:index] + flipped + parsed.signature[index + 1 :]
        values["authorization"] = Authorization(parsed.api_key, parsed.algorithm, parsed.headers, signature).encoded()
    else:
        values[part] = values[part] + data.draw(st.text(string.ascii_letters, min_size=1))
    with pytest.raises(AigesError) as caught:
        checker.commit(checker.verify(SignedRequest(values["authorization"], method, target, values.get)))
    assert caught.value.code in (ErrorCode.AUTH_SIGNATURE, ErrorCode.AUTH_DATE)


def test_body_digest():
    assert body_digest(b"") == "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_keys_file_is_read_again_when_it_changes_and_a_broken_one_is_not_taken(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    clock = Clock(0.0)
    keys = KeysFile(path, clock=clock)
    assert set(keys.load().by_key) == {"key-1", "key-ops"}
    assert keys.current().by_cert_name["ops.example"].admin
    path.write_text(KEYS.split('[[app]]\napp_id = "ops"')[0])
    os.utime(path, ns=(1, 1))
    assert "key-ops" in keys.current().by_key  # looked at most once a second
    clock.now = 1.5
    assert set(keys.current().by_key) == {"key-1"}
    path.write_text("[[app]]\napp_id = 3\n")
    clock.now = 3.0
    assert set(keys.current().by_key) == {"key-1"}  # the broken file is reported, the old apps stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[app]]\napp_id = "a"\napi_key = "k"\n', "api_secret is missing"),
        ('[[app]]\napp_id = "a"\napi_key = "k"\napi_secret = "s"\nadmn = true\n', "unknown key 'admn'"),
        ('[[app]]\napp_id = "a"\napi_key = "k"\napi_secret = "s"\nrate = -1\n', "rate must be >= 0"),
        ('[[app]]\napp_id = "a"\napi_key = "k"\napi_secret = "s"\nadmin = "yes"\n', "admin has the wrong type"),
        (
            '[[app]]\napp_id = "a"\napi_key = "k"\napi_secret = "s"\n'
            '[[app]]\napp_id = "b"\napi_key = "k"\napi_secret = "t"\n',
            "also app 'a'",
        ),
        ("apps = []\n", "unknown top-level key"),
    ],
)
def test_keys_file_mistakes_name_the_entry(text, message):
    with pytest.raises(KeysError, match=message):
        parse_keys(text, "keys.toml")


def test_an_app_is_allowed_its_services():
    everything, echo_only = (
        App("a", "k", "s"),
        App("b", "k2", "s", services=frozenset({"echo"})),
    )
    assert everything.allows("echo") and everything.allows(None)
    assert echo_only.allows("echo") and not echo_only.allows("ocr") and not echo_only.allows(None)
