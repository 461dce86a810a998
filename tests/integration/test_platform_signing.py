"""Signatures as the platform makes them, against real servers in ``[auth] mode = "hmac"``: the
original SDK's own signing (``ne_utils.build_auth_request_url``: no nonce, the date to the second)
calling 5 times a second for 3 s from two apps at once, over HTTP and gRPC, all served (calls in
one second carry one signature); ``[auth] hosts`` refusing a signature made for another host;
``[auth] require_nonce`` refusing signatures without a nonce; and the handles a server hands out
(128 random bits after the original's prefix)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from original_sdk import CLIENTS, compile_original_stubs, original_root
from test_security import ROUTE, Secured, grpc_request, health, http_request, start, wait_serving

from aiges.client import Client, SigningKey
from aiges.client.credentials import open_channel
from aiges.protocol.handle import HANDLE_LENGTH, read_handle

KEYS = """
[[app]]
app_id = "a1"
api_key = "key-1"
api_secret = "secret-1"

[[app]]
app_id = "a2"
api_key = "key-2"
api_secret = "secret-2"
"""
APPS = {"a1": SigningKey("key-1", "secret-1"), "a2": SigningKey("key-2", "secret-2")}
RATE, SECONDS = 5, 3


def hmac_server(folder: Path, auth: str) -> Iterator[Secured]:
    (folder / "keys.toml").write_text(KEYS)
    server = start(folder, f'[auth]\nmode = "hmac"\nkeys = "keys.toml"\n{auth}')
    server.start(wait=False)
    try:
        wait_serving(server, lambda: health(server.address))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def platform_server(tmp_path_factory) -> Iterator[Secured]:
    yield from hmac_server(tmp_path_factory.mktemp("platform"), 'hosts = ["127.0.0.1", "localhost"]\n')


@pytest.fixture(scope="module")
def nonce_server(tmp_path_factory) -> Iterator[Secured]:
    yield from hmac_server(tmp_path_factory.mktemp("nonce"), "require_nonce = true\n")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    return compile_original_stubs(tmp_path_factory.mktemp("original-stubs"))


def platform_calls(stubs: Path, mode: str, target: str, key: SigningKey) -> list[dict]:
    done = subprocess.run(
        [
            sys.executable,
            str(CLIENTS / "platform_calls.py"),
            str(original_root()),
            str(stubs),
            mode,
            target,
            key.api_key,
            key.api_secret,
            str(RATE),
            str(SECONDS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_the_platforms_own_signing_at_5_calls_a_second_from_two_apps_is_all_served(platform_server, stubs, mode):
    target = platform_server.http + ROUTE if mode == "http" else platform_server.address
    before = platform_server.calls()
    with ThreadPoolExecutor(len(APPS)) as pool:
        runs = list(pool.map(lambda key: platform_calls(stubs, mode, target, key), APPS.values()))
    served = "OK" if mode == "grpc" else 200
    for results in runs:
        assert len(results) == RATE * SECONDS
        assert [(r["status"], r["code"]) for r in results] == [(served, 0)] * len(results), results
        signatures = [r["authorization"] for r in results]
        assert len(set(signatures)) < len(signatures), "no two calls shared a second: nothing was repeated"
    assert platform_server.calls() == before + len(APPS) * RATE * SECONDS


def platform_signed(host: str, method: str, path: str) -> dict[str, str]:
    return APPS["a1"].sign_headers(host, method, path, nonce=False)


@pytest.mark.parametrize("front", ["xsf", "http"])
def test_a_signature_made_for_another_host_is_refused(platform_server, front):
    before = platform_server.calls()
    for host, served in (("some-other-service.example", False), ("localhost", True), ("127.0.0.1", True)):
        if front == "xsf":
            metadata = list(platform_signed(host, "POST", "/utils.XsfCall/call").items())
            with open_channel(platform_server.address) as channel:
                outcome = grpc_request(channel, "xsf", metadata)
            assert outcome == (("OK", 0) if served else ("UNAUTHENTICATED", 10138)), host
        else:
            signed = platform_signed(host, "POST", ROUTE)
            outcome = http_request(platform_server.http, "http", lambda method, url, s=signed: (url, s))
            assert outcome == ((200, 0) if served else (401, 10138)), host
    assert platform_server.calls() == before + 2


@pytest.mark.parametrize("front", ["xsf", "http"])
def test_require_nonce_refuses_the_platforms_signatures_and_serves_nonced_ones(nonce_server, front):
    before = nonce_server.calls()
    if front == "xsf":
        with open_channel(nonce_server.address) as channel:
            bare = list(platform_signed("127.0.0.1", "POST", "/utils.XsfCall/call").items())
            assert grpc_request(channel, "xsf", bare) == ("UNAUTHENTICATED", 10139)
            nonced = list(APPS["a1"].sign_headers("127.0.0.1", "POST", "/utils.XsfCall/call").items())
            assert grpc_request(channel, "xsf", nonced) == ("OK", 0)
            assert grpc_request(channel, "xsf", nonced) == ("UNAUTHENTICATED", 10135)
    else:
        bare = platform_signed("127.0.0.1", "POST", ROUTE)
        assert http_request(nonce_server.http, "http", lambda method, url: (url, bare)) == (401, 10139)
        nonced = APPS["a1"].sign_headers("127.0.0.1", "POST", ROUTE)
        assert http_request(nonce_server.http, "http", lambda method, url: (url, nonced)) == (200, 0)
        assert http_request(nonce_server.http, "http", lambda method, url: (url, nonced)) == (401, 10135)
    assert nonce_server.calls() == before + 1


def test_the_handles_a_server_hands_out_are_unguessable_in_the_original_prefix(platform_server):
    handles = []
    for key in APPS.values():
        with Client(platform_server.address, signing=key) as client:
            handles += [client.once({"text": b"x"}, expect=["text"]).handle for _ in range(5)]
    assert len(set(handles)) == len(handles)
    for handle in handles:
        info = read_handle(handle)
        assert len(handle) == HANDLE_LENGTH and (info.ip, info.port, info.front) == (
            "127.0.0.1",
            platform_server.port,
            0,
        )
    randoms = sorted(int(handle[15:], 16) for handle in handles)
    assert min(b - a for a, b in zip(randoms, randoms[1:], strict=False)) > 1 << 64, "handles close to one another"
