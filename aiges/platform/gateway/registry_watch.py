"""Every provider of every service under the registry prefix, listed once and then followed with
an etcd watch (``<prefix>/<service>/<version>/providers/<host:port>``). While etcd cannot be
reached the last providers known are kept (the gateway routes on) and the endpoints are tried in
turn; each time it is back, the whole prefix is listed again."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aetcd
import structlog

from aiges.platform.etcd_liveness import retry_delay, watched
from aiges.platform.gateway.topology import Provider
from aiges.registry.etcd import parse_endpoints

log = structlog.get_logger("aiges.gateway")


def parse_key(prefix: str, key: bytes) -> tuple[str, str, str] | None:
    """(service, version, address) of a provider key, None for any other key."""
    parts = key.decode(errors="replace").removeprefix(prefix).split("/")
    if len(parts) != 4 or parts[2] != "providers" or not all(parts):
        return None
    return parts[0], parts[1], parts[3]


def parse_value(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class RegistryWatch:
    def __init__(self, endpoints: str, prefix: str, changed: Callable[[], None]) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.prefix = prefix.rstrip("/") + "/"
        self.changed = changed
        self.providers: dict[tuple[str, str, str], Provider] = {}
        self.connected = False
        self.listed = asyncio.Event()

    async def run(self) -> None:
        attempt = 0
        while True:
            host, port = self.endpoints[attempt % len(self.endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=5)
            try:
                listing = await client.get_prefix(self.prefix.encode())
                found = {}
                for kv in listing:
                    parsed = parse_key(self.prefix, kv.key)
                    if parsed is not None:
                        found[parsed] = Provider(*parsed, parse_value(kv.value))
                self.providers = found
                self.listed.set()
                self.changed()
                watch = await client.watch_prefix(self.prefix.encode(), start_revision=listing.header.revision + 1)
                if not self.connected:
                    self.connected = True
                    log.info("registry followed", endpoint=f"{host}:{port}", providers=len(found))
                attempt = 0
                async for event in watched(client, watch, self.prefix.encode()):
                    parsed = parse_key(self.prefix, event.kv.key)
                    if parsed is None:
                        continue
                    if event.kind == "DELETE":
                        self.providers.pop(parsed, None)
                    else:
                        self.providers[parsed] = Provider(*parsed, parse_value(event.kv.value))
                    self.changed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd lost: route on with what is known
                if self.connected:
                    self.connected = False
                    log.warning(
                        "registry lost; routing on to the hosts known",
                        endpoint=f"{host}:{port}",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                attempt += 1
                await asyncio.sleep(retry_delay(attempt, len(self.endpoints)))
            finally:
                with contextlib.suppress(Exception):
                    await client.close()
