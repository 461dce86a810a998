"""Registration in etcd (client: aetcd).

The entry is a key bound to a lease of ``ttl`` seconds, so it disappears on its own if the server
dies; its JSON value (address, version, workers, GPUs, licences, health, labels: what clients
balance on) is rewritten only when it changes, and the lease is kept alive at a third of its
ttl with keep-alives, which write no revision. Losing etcd never
disturbs serving: the loop retries with backoff (never longer than a third of the ttl, so that it
is back before its lease can expire), and first resumes its lease: etcd keeps leases while it has
no leader and extends them when one is elected, so after a member failure or a lost quorum the
key stays where it was, with no gap for clients. Only a lease that did expire means registering
again with a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aetcd
import structlog

from aiges.metrics import REGISTERED

log = structlog.get_logger("aiges.registry")

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    endpoints = []
    for part in text.split(","):
        part = part.strip().removeprefix("http://")
        if not part:
            continue
        host, _, port = part.rpartition(":")
        endpoints.append((host or "127.0.0.1", int(port or 2379)))
    return endpoints


class EtcdRegistry:
    def __init__(self, endpoints: str, ttl: int, key: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.ttl = ttl
        self.key = key.encode()
        self.snapshot = snapshot
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aetcd.Client | None = None
        self._lease: Any = None
        self._last = b""
        self._registered = False

    @property
    def registered(self) -> bool:
        return self._registered

    @registered.setter
    def registered(self, value: bool) -> None:
        """Also ``aiges_registry_registered``, which exists from ``start`` on (not while the
        server is still starting, so that a long wrapperInit is not a lost registration)."""
        self._registered = value
        if self._task is not None:
            REGISTERED.labels("etcd").set(1 if value else 0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self.registered = self._registered

    def changed(self) -> None:
        self._changed.set()

    def _value(self) -> bytes:
        return json.dumps(self.snapshot(), sort_keys=True).encode()

    async def _run(self) -> None:
        attempt = 0
        endpoint = 0
        while True:
            host, port = self.endpoints[endpoint % len(self.endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=max(min(self.ttl / 2, 5), 1))
            try:
                if not await self._resume(client):
                    await self._register(client)
                attempt = 0
                await self._keep(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any etcd or network failure: retry
                self.registered = False
                wait = min(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)], self.ttl / 3)
                log.warning(
                    "etcd registration lost, retrying",
                    endpoint=f"{host}:{port}",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_s=wait,
                )
                await self._close(client)
                attempt += 1
                endpoint += 1
                await asyncio.sleep(wait)

    async def _resume(self, client: aetcd.Client) -> bool:
        """Keep the lease a lost connection left behind, if etcd still has it (the key bound to
        it is then still there); the value is written again in case it changed meanwhile."""
        if self._lease is None:
            return False
        await client.connect()
        lease = aetcd.leases.Lease(self._lease.id, self.ttl, client)
        reply = await lease.refresh()
        if reply is None or reply.TTL <= 0:
            self._lease = None
            return False
        self._client = client
        self._lease = lease
        self._last = self._value()
        await client.put(self.key, self._last, lease=lease)
        self.registered = True
        log.info("registration resumed in etcd", key=self.key.decode(), lease=lease.id, ttl_s=reply.TTL)
        return True

    async def _register(self, client: aetcd.Client) -> None:
        await client.connect()
        self._client = client
        self._lease = await client.lease(self.ttl)
        self._last = self._value()
        await client.put(self.key, self._last, lease=self._lease)
        self.registered = True
        log.info("registered in etcd", key=self.key.decode(), lease=self._lease.id, ttl_s=self.ttl)

    async def _keep(self, client: aetcd.Client) -> None:
        """Rewrite the value when it changes (checked at least every second); keep the lease alive."""
        keepalive = self.ttl / 3
        next_keepalive = time.monotonic() + keepalive
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(1.0, keepalive))
            self._changed.clear()
            value = self._value()
            if value != self._last:
                await client.put(self.key, value, lease=self._lease)
                self._last = value
            if time.monotonic() >= next_keepalive:
                reply = await self._lease.refresh()
                if reply is None or reply.TTL <= 0:
                    raise RuntimeError(f"lease {self._lease.id} expired")
                next_keepalive = time.monotonic() + keepalive

    async def deregister(self) -> None:
        """Delete the key and revoke the lease (a few seconds at most), then stop."""
        client, registered = self._client, self.registered
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if client is None:
            return
        if not registered:
            await self._close(client)
            return
        try:
            await asyncio.wait_for(client.delete(self.key), 3)
            if self._lease is not None:
                await asyncio.wait_for(self._lease.revoke(), 3)
            log.info("deregistered from etcd", key=self.key.decode())
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own anyway
            log.warning("etcd deregistration failed; the lease will expire", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.registered = False
            await self._close(client)

    async def _close(self, client: aetcd.Client) -> None:
        with contextlib.suppress(Exception):
            await client.close()
        if self._client is client:
            self._client = None
