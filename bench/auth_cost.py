"""What caller authentication costs per request (``[auth] mode = "hmac"``).

Two figures: the server's check alone (parse the authorization, look up the key, check the date,
HMAC-SHA256 over the signed text, the replay cache), in microseconds per request, in this
process; and xsf one-shot calls end to end, one at a time, against a server with ``mode = "none"``
and one with ``mode = "hmac"`` (the client signs each call), the best batch mean of each.

    python bench/auth_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from email.utils import formatdate
from pathlib import Path

from common import ROOT, aiges_server

from aiges.client import Client, SigningKey
from aiges.server.security.app_keys import KeysFile
from aiges.server.security.hmac_signing import SignatureChecker, SignedRequest

KEYS = '[[app]]\napp_id = "bench"\napi_key = "key-bench"\napi_secret = "secret-bench"\n'
KEY = SigningKey("key-bench", "secret-bench")
METHOD = "/utils.XsfCall/call"


def check_cost(count: int) -> float:
    """Microseconds per signed request checked (each a fresh signature, as clients send them)."""
    folder = Path(tempfile.mkdtemp(prefix="aiges-auth-bench-"))
    (folder / "keys.toml").write_text(KEYS)
    keys = KeysFile(folder / "keys.toml")
    keys.load()
    checker = SignatureChecker(keys, 300)
    date = formatdate(time.time(), usegmt=True)
    signed = [KEY.sign_headers("127.0.0.1", "POST", METHOD, date=date) for _ in range(count)]
    started = time.perf_counter()
    for values in signed:
        checker.commit(checker.verify(SignedRequest(values["authorization"], "POST", METHOD, values.get)))
    return (time.perf_counter() - started) / count * 1e6


def batch_ms(client: Client, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        client.once({"text": b"x"}, expect=["text"])
    return (time.perf_counter() - started) / calls * 1e3


def call_latencies(plain: str, hmac: str, calls: int, rounds: int = 10) -> tuple[float, float]:
    """The best mean milliseconds per one-shot xsf call, one at a time, over ``rounds`` batches
    that alternate between the two servers (so that a machine's load hits both alike)."""
    with Client(plain) as unsigned, Client(hmac, signing=KEY) as signed:
        for client in (unsigned, signed):
            batch_ms(client, 50)
        best = [float("inf"), float("inf")]
        for _ in range(rounds):
            for index, client in enumerate((unsigned, signed)):
                best[index] = min(best[index], batch_ms(client, calls // rounds))
        return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(f"server check alone: {check_cost(20000):.1f} us per request")
    echo = ROOT / "demo" / "echo"
    folder = Path(tempfile.mkdtemp(prefix="aiges-auth-bench-"))
    (folder / "keys.toml").write_text(KEYS)
    hmac_extra = f'[auth]\nmode = "hmac"\nkeys = "{folder / "keys.toml"}"\n'
    with aiges_server(echo) as plain_address, aiges_server(echo, extra=hmac_extra) as hmac_address:
        plain, signed = call_latencies(plain_address, hmac_address, args.calls)
    print(f"xsf once, one at a time: none {plain:.3f} ms, hmac {signed:.3f} ms (+{(signed - plain) * 1e3:.0f} us)")


if __name__ == "__main__":
    main()
