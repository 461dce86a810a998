"""Schemathesis hooks for the HTTP fuzz in ``[auth] mode = "hmac"`` (``SCHEMATHESIS_HOOKS``).

Every generated request gets the credentials of the next case in turn: a valid signature (in the
query, as the platform's clients send it, or as headers), none, a wrong secret, a signature over
another path (a tampered request line), an expired date, an unknown app, an app not allowed for
the service, or a replay of an earlier valid signature for the same request line. The check
``refused_with_its_code`` asserts each bad case is refused with its HTTP status and AIGes code
(open routes, probes and the description, answer anything but a 5xx), and the valid case is
never refused for its credentials nor a 5xx but the wrapper's own 10106; every outcome is
appended to ``AIGES_FUZZ_RECORD`` so the test can compare it with what reached the wrapper.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from email.utils import formatdate

import schemathesis
from requests.utils import requote_uri

from aiges.protocol.request_signing import SigningKey
from aiges.server.security.http_auth import OPEN_PATHS, OPEN_PREFIXES

VALID = SigningKey("key-1", "secret-1")
CASES = {
    # name: (key, date offset s, signed path suffix, HTTP status, AIGes code); None: served
    "valid": (VALID, 0, "", None, None),
    "no credentials": (None, 0, "", 401, 10130),
    "wrong secret": (SigningKey("key-1", "not-the-secret"), 0, "", 401, 10133),
    "tampered path": (VALID, 0, "/elsewhere", 401, 10133),
    "expired date": (VALID, -3600, "", 401, 10134),
    "unknown app": (SigningKey("key-nobody", "secret"), 0, "", 401, 10132),
    "not allowed": (SigningKey("key-else", "secret-else"), 0, "", 403, 10136),
    "replay": (None, 0, "", 401, 10135),
}
EXPECTED = {name: (case[3], case[4]) for name, case in CASES.items()}
MARK, TURN = "x-fuzz-case", "x-fuzz-turn"
_turns = itertools.cycle([(name, form) for name in CASES for form in ("query", "headers")])
_pending: dict[str, tuple[tuple[str, str, str], dict[str, str]]] = {}
"""Valid signatures made, by turn, until their request is seen answered."""
_signed: dict[tuple[str, str, str], dict[str, str]] = {}
"""The last valid signature sent per (method, path, form): what a replay sends again."""
_count = itertools.count()


def is_open(method: str, path: str) -> bool:
    return method == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


@schemathesis.auth(refresh_interval=None, retry_on=[])
class PlatformSignature:
    def get(self, case, context) -> str:
        return ""

    def set(self, case, data, context) -> None:
        name, form = next(_turns)
        method, path = case.method.upper(), requote_uri(case.formatted_path)  # as it goes on the wire
        key, offset, suffix = CASES[name][:3]
        values: dict[str, str] = {}
        if name == "replay":
            values = _signed.pop((method, path, form), {})
            if not values:
                name, key = "valid", VALID  # nothing to replay yet: this one is signed afresh
        if key is not None:
            host = "127.0.0.1" if form == "query" else f"127.0.0.1:{os.environ['AIGES_FUZZ_PORT']}"
            date = formatdate(time.time() + offset, usegmt=True)
            values = key.sign_headers(host, method, path + suffix, date=date)
            if name == "valid":
                turn = str(next(_count))
                _pending[turn] = ((method, path, form), values)
                case.headers = {**(case.headers or {}), TURN: turn}
        if form == "query" and values:
            case.query = {**(case.query or {}), **values}
        else:
            case.headers = {**(case.headers or {}), **values}
        case.headers = {**(case.headers or {}), MARK: name}


@schemathesis.check
def refused_with_its_code(ctx, response, case) -> None:
    name = (case.headers or {}).get(MARK, "valid")
    sent = _pending.pop((case.headers or {}).get(TURN, ""), None)
    if sent is not None:  # only a signature that was sent can be replayed
        _signed[sent[0]] = sent[1]
    status, code = EXPECTED[name]
    method, path = case.method.upper(), case.formatted_path
    with open(os.environ["AIGES_FUZZ_RECORD"], "a") as record:
        record.write(json.dumps([name, method, path, response.status_code]) + "\n")
    if is_open(method, path):
        if response.status_code >= 500:
            raise AssertionError(f"{name}: {method} {path} answered {response.status_code}")
        return
    if status is None:
        if response.status_code in (401, 403):
            raise AssertionError(f"valid credentials refused: {method} {path} {response.text}")
        if response.status_code >= 500 and "10106" not in response.text:
            # 10106: the echo wrapper answers an undeclared input under its undeclared name (its fault)
            raise AssertionError(f"{name}: {method} {path} answered {response.status_code}")
        return
    if response.status_code != status:
        raise AssertionError(f"{name}: {method} {path} answered {response.status_code}, not {status}")
    body = json.loads(response.content)
    got = body["header"]["code"] if "header" in body else int(str(body["error"]).split(":")[0])
    if got != code:
        raise AssertionError(f"{name}: {method} {path} answered code {got}, not {code}")
