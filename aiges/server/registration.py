"""Each service registered under its own name: ``<prefix>/<name>/<version>/providers/<address>``,
its value that service's own load (``Service.registry_value``), on its own lease.

A replace that keeps the version keeps the entry (its value follows the new version from the
switch on, with no gap for clients); one that changes it registers the new key, then removes the
old. A removed service's entry goes first thing, before its calls drain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from aiges.config import RegistrySection
from aiges.registry import make_registry, provider_key
from aiges.registry.interface import Registry
from aiges.server.service import Service

log = structlog.get_logger("aiges.registry")

Health = Callable[[Service], tuple[str, str]]
"""A service's (phase, health status) for its entry."""


class Registrations:
    def __init__(
        self,
        section: RegistrySection,
        address: str,
        health: Health,
        extra: Callable[[Service], dict[str, Any]] = lambda service: {},
    ) -> None:
        """``extra``: more of a service's value (its routes, for a gateway)."""
        self.section = section
        self.address = address
        self.health = health
        self.extra = extra
        self._entries: dict[str, tuple[Registry, Service]] = {}
        """key -> (its registry entry, the service it describes)."""

    def key_of(self, service: Service) -> str:
        return provider_key(self.section.prefix, service.name, service.version, self.address)

    def _value(self, key: str) -> dict[str, object]:
        service = self._entries[key][1]
        phase, health = self.health(service)
        return {**service.registry_value(self.address, phase, health), **self.extra(service)}

    async def register(self, service: Service) -> None:
        """Register a serving service (again, for a replace with the same key: its new version)."""
        key = self.key_of(service)
        entry = self._entries.get(key)
        service.on_labels = self.changed
        if entry is not None:
            self._entries[key] = (entry[0], service)
            entry[0].changed()
            return
        registry = make_registry(self.section, key, lambda: self._value(key))
        self._entries[key] = (registry, service)
        await registry.start()
        log.debug("registering", key=key)

    async def deregister(self, service: Service) -> None:
        """Remove the service's entry, unless another (its successor) holds the key now."""
        for key, (registry, holder) in list(self._entries.items()):
            if holder is service:
                del self._entries[key]
                await registry.deregister()

    async def deregister_all(self) -> None:
        entries, self._entries = self._entries, {}
        for registry, _ in entries.values():
            await registry.deregister()

    def changed(self, service: Service | None = None) -> None:
        """A service's state changed (every service's, with None): refresh its entry soon."""
        for registry, holder in self._entries.values():
            if service is None or holder is service:
                registry.changed()
