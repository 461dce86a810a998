"""A server keeps its etcd lease through an etcd outage longer than the lease: etcd keeps leases
while it cannot serve and extends them when it is back, and the server resumes the same lease
instead of registering anew, so its key never disappears (no gap in which clients see no
provider)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request

import aetcd
from conftest import free_port, require_tool, wait_for

PREFIX = "/aiges/services/streamer/v1/providers/"


class Etcd:
    """One etcd member that can be killed and started again on the same ports and data."""

    def __init__(self, workdir) -> None:
        self.binary = require_tool("etcd")
        self.workdir = workdir
        self.client_port, self.peer_port = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.workdir / "etcd.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--name",
                    "one",
                    "--data-dir",
                    str(self.workdir / "etcd-data"),
                    "--listen-client-urls",
                    f"http://{self.endpoint}",
                    "--advertise-client-urls",
                    f"http://{self.endpoint}",
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"one={peer}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.healthy, timeout=30, interval=0.1)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as reply:
                return b"true" in reply.read()
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None, "kill() of an etcd never started"
        self.process.kill()
        self.process.wait()

    def keys(self) -> dict[str, int]:
        """Each provider key and the lease it is bound to."""

        async def read():
            async with aetcd.Client(host="127.0.0.1", port=self.client_port, timeout=2) as client:
                return {kv.key.decode(): kv.lease for kv in await client.get_prefix(PREFIX.encode())}

        try:
            return asyncio.run(read())
        except Exception:  # noqa: BLE001 - not answering yet
            return {}


def test_the_lease_outlives_an_etcd_outage_longer_than_its_ttl(serve, tmp_path):
    etcd = Etcd(tmp_path)
    etcd.start()
    try:
        server = serve("streamer", extra=f'[registry]\nbackend = "etcd"\nendpoints = "{etcd.endpoint}"\nttl = 2\n')
        key = PREFIX + server.address
        lease = wait_for(lambda: etcd.keys().get(key))
        etcd.kill()
        time.sleep(5)  # two and a half TTLs without etcd: what is measured is what survives it
        etcd.start()
        assert etcd.keys().get(key) == lease  # etcd kept the lease
        wait_for(lambda: "registration resumed in etcd" in server.log(), timeout=15)
        time.sleep(3)  # past the lease's TTL again: the server keeps it alive, same lease, same key
        assert etcd.keys().get(key) == lease
        assert server.log().count('"registered in etcd"') == 1
    finally:
        etcd.kill()
