"""The test's eyes inside the cluster: run in the client namespace, it answers one JSON line per
JSON line on stdin (the test process itself has no route into the cluster's network).

    {"op": "providers"}                  the registered providers: value, lease and its TTL left
    {"op": "etcd"}                       each member: reachable, leader (from its /metrics)
    {"op": "status", "address": A}       a host's cmdserver status (licences, workers, health)
    {"op": "health", "address": A}       a host's grpc.health.v1 status name

Each answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

import aetcd
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

TIMEOUT_S = 2.0


class Probe:
    def __init__(self, endpoints: list[str], prefix: str) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.loop = asyncio.new_event_loop()

    def providers(self) -> dict:
        errors = []
        for endpoint in self.endpoints:
            try:
                return {"providers": self.loop.run_until_complete(self._list(endpoint)), "endpoint": endpoint}
            except Exception as exc:  # noqa: BLE001 - try the next member
                errors.append(f"{endpoint}: {type(exc).__name__}: {exc}")
        raise RuntimeError("; ".join(errors))

    async def _list(self, endpoint: str) -> dict:
        host, _, port = endpoint.rpartition(":")
        async with aetcd.Client(host=host, port=int(port), timeout=TIMEOUT_S) as client:
            listing = await client.get_prefix(self.prefix.encode())
            found = {}
            for kv in listing:
                lease = await client.get_lease_info(kv.lease, keys=False) if kv.lease else None
                found[kv.key.decode().removeprefix(self.prefix)] = {
                    "value": json.loads(kv.value),
                    "lease": kv.lease,
                    "ttl": lease.TTL if lease else None,
                }
            return found

    def etcd(self) -> dict:
        members = {}
        for endpoint in self.endpoints:
            try:
                with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=TIMEOUT_S) as reply:
                    text = reply.read().decode()
            except OSError as exc:
                members[endpoint] = {"up": False, "error": str(exc)}
                continue
            gauges = {}
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name in ("etcd_server_is_leader", "etcd_server_has_leader"):
                    gauges[name] = float(value) == 1.0
            members[endpoint] = {
                "up": True,
                "leader": gauges.get("etcd_server_is_leader", False),
                "has_leader": gauges.get("etcd_server_has_leader", False),
            }
        return {"members": members}

    @staticmethod
    def status(address: str) -> dict:
        with grpc.insecure_channel(address) as channel:
            reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=TIMEOUT_S)
        return {"status": json.loads(reply.body)}

    @staticmethod
    def health(address: str) -> dict:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        return {"health": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}

    def answer(self, request: dict) -> dict:
        op = request.get("op")
        try:
            if op == "providers":
                result = self.providers()
            elif op == "etcd":
                result = self.etcd()
            elif op == "status":
                result = self.status(request["address"])
            elif op == "health":
                result = self.health(request["address"])
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, **result}


def main() -> None:
    endpoints, prefix = sys.argv[1].split(","), sys.argv[2]
    probe = Probe(endpoints, prefix)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(probe.answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
