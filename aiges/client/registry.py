"""Finding servers through the registry, and calling them with load-aware balancing.

    from aiges.client import BalancedClient, EtcdProviders

    providers = EtcdProviders("10.0.0.5:2379,10.0.0.6:2379,10.0.0.7:2379", service="echo", version="v1")
    with BalancedClient(providers) as client:
        client.once({"text": b"hi"}, expect=["text"], idempotent=True)

``EtcdProviders`` lists ``<prefix>/<service>/<version>/providers/`` once and then follows it with
an etcd watch, in a background thread, so a server that registers, changes health or goes away
(its key deleted on drain, or its lease expired) is seen within moments. While etcd cannot be
reached (its quorum lost) it keeps the last providers it knew and tries the endpoints in turn.
``BalancedClient`` chooses a provider per call and retries where that is safe: see
``aiges.client.balancer`` for the policy and the retry rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aetcd
import grpc

from aiges.client.balancer import (
    CHANNEL_OPTIONS,
    MAX_ATTEMPTS,
    Balancer,
    Entry,
    Outcome,
    classify_code,
    classify_status,
    may_retry,
)
from aiges.client.session_calls import StreamSession, XsfSession
from aiges.client.values import AigesCallError, InputValue, Result
from aiges.client.xsf_client import Client, Expect
from aiges.registry.etcd import BACKOFF_S, parse_endpoints
from aiges.registry.interface import providers_prefix

Change = Callable[[str, str, Mapping[str, Any] | None], None]
"""``on_change(kind, address, value)``: "added", "changed" or "removed" for a provider (with its
new value, None when removed); "etcd-lost" and "etcd-back" for the registry itself (address: the
endpoint). Called from the watch thread."""


class NoProviderError(Exception):
    """No SERVING provider of the service could take the call."""


class EtcdProviders:
    def __init__(
        self,
        endpoints: str = "127.0.0.1:2379",
        *,
        service: str,
        version: str,
        prefix: str = "/aiges/services",
        wait_s: float = 5.0,
        on_change: Change | None = None,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.prefix = providers_prefix(prefix, service, version)
        self.on_change = on_change
        self._providers: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._listed = threading.Event()
        self._stop = threading.Event()
        self.connected = False
        """True while a watch is established on some etcd member."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="aiges-etcd-providers", daemon=True)
        self._thread.start()
        self._listed.wait(wait_s)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each provider's registry value, by address."""
        with self._lock:
            return {address: dict(entry.value) for address, entry in self._providers.items()}

    def entries(self) -> dict[str, Entry]:
        """Each provider's value and lease, by address (what ``Balancer`` reads)."""
        with self._lock:
            return dict(self._providers)

    def best(self, exclude: Iterable[str] = ()) -> str | None:
        """The SERVING provider with the most free licences, outside ``exclude``."""
        skip = set(exclude)
        with self._lock:
            candidates = [
                (entry.value.get("licences_free", 0), address)
                for address, entry in self._providers.items()
                if address not in skip and entry.value.get("health") == "SERVING"
            ]
        return max(candidates)[1] if candidates else None

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: None)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._follow())

    def _notify(self, kind: str, address: str, value: Mapping[str, Any] | None = None) -> None:
        if self.on_change is not None:
            self.on_change(kind, address, value)

    def _replace(self, listing: dict[str, Entry]) -> None:
        with self._lock:
            before, self._providers = self._providers, listing
        for address in before.keys() - listing.keys():
            self._notify("removed", address)
        for address, entry in listing.items():
            if address not in before:
                self._notify("added", address, entry.value)
            elif before[address] != entry:
                self._notify("changed", address, entry.value)

    async def _follow(self) -> None:
        self._loop = asyncio.get_running_loop()
        attempt = 0
        while not self._stop.is_set():
            host, port = self.endpoints[attempt % len(self.endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=5)
            try:
                listing = await client.get_prefix(self.prefix.encode())
                self._replace({self._address(kv.key): Entry(self._parse(kv.value), kv.lease) for kv in listing})
                self._listed.set()
                watch = await client.watch_prefix(self.prefix.encode(), start_revision=listing.header.revision + 1)
                attempt = 0
                if not self.connected:
                    self.connected = True
                    self._notify("etcd-back", f"{host}:{port}")
                stopper = asyncio.create_task(self._until_stopped(watch))
                try:
                    async for event in watch:
                        self._apply(event)
                finally:
                    stopper.cancel()
            except Exception:  # noqa: BLE001 - etcd unreachable: keep what we know, try the next member
                if self.connected:
                    self.connected = False
                    self._notify("etcd-lost", f"{host}:{port}")
                attempt += 1
                # each member once quickly, then back off
                wait = (
                    0.1
                    if attempt % len(self.endpoints)
                    else BACKOFF_S[min(attempt // len(self.endpoints), len(BACKOFF_S) - 1)]
                )
                await self._sleep(wait)
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

    def _apply(self, event: aetcd.rtypes.Event) -> None:
        address = self._address(event.kv.key)
        entry = None
        with self._lock:
            if event.kind == "DELETE":
                known = self._providers.pop(address, None) is not None
            else:
                known = address in self._providers
                entry = self._providers[address] = Entry(self._parse(event.kv.value), event.kv.lease)
        if entry is None:
            if known:
                self._notify("removed", address)
        else:
            self._notify("changed" if known else "added", address, entry.value)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))

    async def _until_stopped(self, watch: aetcd.rtypes.Watch) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        await watch.cancel()

    def _address(self, key: bytes) -> str:
        return key.decode().removeprefix(self.prefix)

    @staticmethod
    def _parse(value: bytes) -> dict[str, Any]:
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return parsed if isinstance(parsed, dict) else {}


class BalancedClient:
    """The ``Client`` API over every provider of a service, balanced and retried as
    ``aiges.client.balancer`` says; each provider's channel is followed with gRPC's own
    connectivity state (a failed connection marks it down, READY brings it back)."""

    def __init__(self, providers: EtcdProviders, *, balancer: Balancer | None = None, **client_options: Any) -> None:
        self.providers = providers
        self.balancer = balancer or Balancer(providers)
        self.client_options = client_options
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> BalancedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def client(self, address: str) -> Client:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = Client(address, options=CHANNEL_OPTIONS, **self.client_options)
                client.channel.subscribe(lambda state, a=address: self._connectivity(a, state))
            return client

    def _connectivity(self, address: str, state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            self.balancer.mark_down(address, "connection failed")
        elif state == grpc.ChannelConnectivity.READY:
            self.balancer.mark_up(address, "connected")
        elif state == grpc.ChannelConnectivity.IDLE and address in self.providers.entries():
            # a lost connection leaves the channel idle: ask gRPC to connect again (with its own
            # back-off), so that READY can tell us the provider is back
            with self._lock:
                client = self._clients.get(address)
            if client is not None:
                client.channel.subscribe(_ignore, try_to_connect=True)
                client.channel.unsubscribe(_ignore)

    def _choose(self, tried: list[str]) -> str:
        address = self.balancer.choose(exclude=tried)
        if address is None:
            raise NoProviderError(f"no provider left for {self.providers.prefix} (tried {tried or 'none'})")
        return address

    def once(
        self,
        inputs: Mapping[str, InputValue],
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = None,
        check: bool = True,
        idempotent: bool = False,
    ) -> Result:
        """A one-shot call on the chosen provider. Refused calls (10110) and calls that never
        reached a server are tried on another provider; calls whose connection was lost on the
        way only when ``idempotent`` (they may have run)."""
        tried: list[str] = []
        while True:
            address = self._choose(tried)
            tried.append(address)
            started = self.balancer.begin(address)
            try:
                result = self.client(address).once(inputs, params=params, headers=headers, expect=expect, check=False)
            except grpc.RpcError as exc:
                outcome = classify_status(exc.code(), exc.details())
                self.balancer.end(address, started, outcome)
                if may_retry(outcome, idempotent) and len(tried) < MAX_ATTEMPTS:
                    continue
                raise
            outcome = classify_code(result.code)
            self.balancer.end(address, started, outcome)
            if outcome is Outcome.REFUSED and len(tried) < MAX_ATTEMPTS:
                continue
            if check and result.code:
                raise AigesCallError(result.code, result.message, result.handle)
            return result

    def session(self, inputs: Mapping[str, InputValue] | None = None, **options: Any) -> XsfSession | StreamSession:
        """A session on the chosen provider; it stays there (a session lives on one server, and
        its frames are never sent anywhere else). Only an opening that was refused or never
        reached a server is tried on another provider."""
        tried: list[str] = []
        while True:
            address = self._choose(tried)
            tried.append(address)
            started = self.balancer.begin(address)
            try:
                session = self.client(address).session(inputs, **options)
            except grpc.RpcError as exc:
                outcome = classify_status(exc.code(), exc.details())
                self.balancer.end(address, started, outcome)
                if outcome in (Outcome.UNREACHED, Outcome.REFUSED) and len(tried) < MAX_ATTEMPTS:
                    continue
                raise
            except AigesCallError as exc:
                outcome = classify_code(exc.code)
                self.balancer.end(address, started, outcome)
                if outcome is Outcome.REFUSED and len(tried) < MAX_ATTEMPTS:
                    continue
                raise
            self.balancer.end(address, started, Outcome.OK)
            return session


def _ignore(state: grpc.ChannelConnectivity) -> None:
    return None
