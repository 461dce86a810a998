"""Finding servers through the registry, and calling the least-loaded one.

    from aiges.client import BalancedClient, EtcdProviders

    providers = EtcdProviders("127.0.0.1:2379", service="echo", version="v1")
    with BalancedClient(providers) as client:
        client.once({"text": b"hi"}, expect=["text"])

``EtcdProviders`` lists ``<prefix>/<service>/<version>/providers/`` once and then follows it with
a watch, in a background thread, so a server that registers or goes away is seen within moments.
``BalancedClient`` sends each one-shot call and each new session to the SERVING provider with the
most free licences; a provider that cannot be reached, is draining or has no licence left is set
aside for that call and the next one is tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping

import aetcd
import grpc

from aiges.client.messages import AigesCallError, InputValue, Result
from aiges.client.xsf import Client, Expect
from aiges.registry.etcd import BACKOFF_S, parse_endpoints
from aiges.registry.interface import providers_prefix

RETRY_ELSEWHERE = {10110}
UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class NoProviderError(Exception):
    """No SERVING provider of the service could take the call."""


class EtcdProviders:
    def __init__(self, endpoints: str = "127.0.0.1:2379", *, service: str, version: str,
                 prefix: str = "/aiges/services", wait_s: float = 5.0) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.prefix = providers_prefix(prefix, service, version)
        self._providers: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._listed = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="aiges-etcd-providers", daemon=True)
        self._thread.start()
        self._listed.wait(wait_s)

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._providers)

    def best(self, exclude: Iterable[str] = ()) -> str | None:
        """The SERVING provider with the most free licences, outside ``exclude``."""
        skip = set(exclude)
        with self._lock:
            candidates = [
                (value.get("licences_free", 0), address)
                for address, value in self._providers.items()
                if address not in skip and value.get("health") == "SERVING"
            ]
        return max(candidates)[1] if candidates else None

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: None)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        self._loop = asyncio.get_running_loop()
        attempt = 0
        while not self._stop.is_set():
            host, port = self.endpoints[attempt % len(self.endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=5)
            try:
                listing = await client.get_prefix(self.prefix.encode())
                with self._lock:
                    self._providers = {self._address(kv.key): self._parse(kv.value) for kv in listing}
                self._listed.set()
                attempt = 0
                watch = await client.watch_prefix(self.prefix.encode(), start_revision=listing.header.revision + 1)
                stopper = asyncio.create_task(self._until_stopped(watch))
                try:
                    async for event in watch:
                        address = self._address(event.kv.key)
                        with self._lock:
                            if event.kind == "DELETE":
                                self._providers.pop(address, None)
                            else:
                                self._providers[address] = self._parse(event.kv.value)
                finally:
                    stopper.cancel()
            except Exception:  # noqa: BLE001 - etcd unreachable: keep what we know, retry
                attempt += 1
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

    async def _until_stopped(self, watch) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        await watch.cancel()

    def _address(self, key: bytes) -> str:
        return key.decode().removeprefix(self.prefix)

    @staticmethod
    def _parse(value: bytes) -> dict:
        try:
            return json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}


class BalancedClient:
    """The ``Client`` API over every provider of a service."""

    def __init__(self, providers: EtcdProviders, **client_options) -> None:
        self.providers = providers
        self.client_options = client_options
        self._clients: dict[str, Client] = {}

    def __enter__(self) -> BalancedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def client(self, address: str) -> Client:
        if address not in self._clients:
            self._clients[address] = Client(address, **self.client_options)
        return self._clients[address]

    def _candidates(self) -> Iterator[str]:
        """Providers, best first, each once; NoProviderError when none is left."""
        tried: list[str] = []
        while (address := self.providers.best(exclude=tried)) is not None:
            tried.append(address)
            yield address
        raise NoProviderError(f"no provider left for {self.providers.prefix} (tried {tried or 'none'})")

    def once(self, inputs: Mapping[str, InputValue], *, params: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, expect: Expect = None, check: bool = True) -> Result:
        """A one-shot call on the best provider, failing over to the next one."""
        for address in self._candidates():
            try:
                result = self.client(address).once(inputs, params=params, headers=headers, expect=expect, check=False)
            except grpc.RpcError as exc:
                if exc.code() in UNREACHABLE:
                    continue
                raise
            if result.code in RETRY_ELSEWHERE:
                continue
            if check and result.code:
                raise AigesCallError(result.code, result.message, result.handle)
            return result

    def session(self, inputs: Mapping[str, InputValue] | None = None, **options):
        """A session on the best provider; it stays there (sessions live on one server)."""
        for address in self._candidates():
            try:
                return self.client(address).session(inputs, **options)
            except grpc.RpcError as exc:
                if exc.code() not in UNREACHABLE:
                    raise
            except AigesCallError as exc:
                if exc.code not in RETRY_ELSEWHERE:
                    raise
