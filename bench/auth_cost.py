"""What caller authentication and the host's shared state cost per request.

In this process, microseconds per request: the server's check (parse the authorization, look
up the key, check the date, HMAC-SHA256 over the signed text, the host), for a signature as the
platform signs it (no nonce: not remembered) and for a nonce'd one (remembered in the replay
cache: this process's memory, or the host state's file shared by the fronts of a port); and each
operation of the host state (``aiges.server.host_state``: licence, token, session, replay cache
alone). Then xsf one-shot calls end to end, one at a time, against a server with ``mode =
"none"``, one with ``mode = "hmac"`` and one with ``mode = "hmac"`` and ``reuseport`` (its replay
cache in the host state), the best batch mean of each.

    python bench/auth_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

from common import ROOT, aiges_server

from aiges.client import Client, SigningKey
from aiges.server.host_state import HostSettings, HostState
from aiges.server.security.app_keys import KeysFile
from aiges.server.security.hmac_signing import SignatureChecker, SignedRequest, replay_horizon
from aiges.server.security.replay_cache import ReplayCache

KEYS = '[[app]]\napp_id = "bench"\napi_key = "key-bench"\napi_secret = "secret-bench"\n'
KEY = SigningKey("key-bench", "secret-bench")
METHOD = "/utils.XsfCall/call"
REPLAY_BYTES = 32 << 20


def per_call_us(count: int, call: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for index in range(count):
        call(index)
    return (time.perf_counter() - started) / count * 1e6


def warmed(cache: ReplayCache) -> ReplayCache:
    """The cache after 200,000 signatures (its pages in memory, as in a server that has run a
    while): a fresh mapping pays a page fault on each page's first write."""
    chosen = random.Random(7)
    now = time.time()
    for _ in range(200_000):
        cache.first_use(chosen.randbytes(32), now + 300, now)
    return cache


def check_cost(count: int, replays: ReplayCache, nonce: bool) -> float:
    """Microseconds per signed request checked (each signed afresh, as clients send them)."""
    folder = Path(tempfile.mkdtemp(prefix="aiges-auth-bench-"))
    (folder / "keys.toml").write_text(KEYS)
    keys = KeysFile(folder / "keys.toml")
    keys.load()
    checker = SignatureChecker(keys, 300, replays=replays)
    date = formatdate(time.time(), usegmt=True)
    signed = [KEY.sign_headers("127.0.0.1", "POST", METHOD, date=date, nonce=nonce) for _ in range(count)]

    def check(index: int) -> None:
        values = signed[index]
        checker.commit(checker.verify(SignedRequest(values["authorization"], "POST", METHOD, values.get)))

    return per_call_us(count, check)


def host_state_costs(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="aiges-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    host = HostState.join(HostSettings(folder, 5090, count * 2, REPLAY_BYTES))
    try:
        buffer, stripes = host.replay_region()
        shared = warmed(ReplayCache(buffer, stripes, host.salt, replay_horizon(300)))
        local = warmed(ReplayCache.in_memory(REPLAY_BYTES, replay_horizon(300)))
        chosen = random.Random(1)
        keys = [chosen.randbytes(32) for _ in range(count)]
        now = time.time()
        figures = {
            "replay cache alone, this process's memory": lambda i: local.first_use(keys[i], now + 300, now),
            "replay cache alone, the host state's file": lambda i: shared.first_use(keys[i], now + 300, now),
            "host state: take a rate token": lambda i: host.take_token("bench", 1e9, 1e9),
            "host state: acquire + release a licence": lambda i: (host.acquire_licence(), host.release_licence()),
            "host state: open + close an app's session": lambda i: (
                host.open_session("bench", 0),
                host.close_session("bench"),
            ),
        }
        for name, call in figures.items():
            print(f"{name + ':':44} {per_call_us(count, call):.1f} us")
        print(
            f"{'checker, nonce, the host state cache:':44} {check_cost(count, shared, nonce=True):.1f} us per request"
        )
    finally:
        host.close()
        shutil.rmtree(folder, ignore_errors=True)


def batch_ms(client: Client, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        client.once({"text": b"x"}, expect=["text"])
    return (time.perf_counter() - started) / calls * 1e3


def call_latencies(addresses: list[str], calls: int, rounds: int = 10) -> list[float]:
    """The best mean milliseconds per one-shot xsf call, one at a time, over ``rounds`` batches
    that alternate between the servers (so that a machine's load hits them alike); the first
    server unsigned, the others signed."""
    clients = [Client(addresses[0])] + [Client(address, signing=KEY) for address in addresses[1:]]
    try:
        for client in clients:
            batch_ms(client, 50)
        best = [float("inf")] * len(clients)
        for _ in range(rounds):
            for index, client in enumerate(clients):
                best[index] = min(best[index], batch_ms(client, calls // rounds))
        return best
    finally:
        for client in clients:
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    local = warmed(ReplayCache.in_memory(REPLAY_BYTES, replay_horizon(300)))
    print(
        f"{'checker, as the platform signs (no nonce):':44} {check_cost(20000, local, nonce=False):.1f} us per request"
    )
    print(f"{'checker, nonce, this process cache:':44} {check_cost(20000, local, nonce=True):.1f} us per request")
    host_state_costs(20000)
    echo = ROOT / "demo" / "echo"
    folder = Path(tempfile.mkdtemp(prefix="aiges-auth-bench-"))
    (folder / "keys.toml").write_text(KEYS)
    state = tempfile.mkdtemp(prefix="aiges-")
    hmac_extra = f'[auth]\nmode = "hmac"\nkeys = "{folder / "keys.toml"}"\n'
    shared = f'reuseport = true\nstate_dir = "{state}"\n'
    with (
        aiges_server(echo) as plain,
        aiges_server(echo, extra=hmac_extra) as signed,
        aiges_server(echo, extra=hmac_extra, service=shared) as signed_shared,
    ):
        none_ms, hmac_ms, shared_ms = call_latencies([plain, signed, signed_shared], args.calls)
    shutil.rmtree(state, ignore_errors=True)
    print(
        f"xsf once, one at a time (aiges' client: nonce'd): none {none_ms:.3f} ms, hmac {hmac_ms:.3f} ms "
        f"(+{(hmac_ms - none_ms) * 1e3:.0f} us), hmac + host state {shared_ms:.3f} ms "
        f"(+{(shared_ms - none_ms) * 1e3:.0f} us)"
    )


if __name__ == "__main__":
    main()
