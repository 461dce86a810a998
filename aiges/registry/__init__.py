"""Registration of the server, its health and its load in an external registry (etcd), so that
clients and load balancers can find it and pick the least-loaded instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiges.config import RegistrySection
from aiges.registry.interface import NullRegistry, Registry, provider_key


def make_registry(section: RegistrySection, key: str, snapshot: Callable[[], dict[str, Any]]) -> Registry:
    if section.backend == "etcd":
        from aiges.registry.etcd import EtcdRegistry

        return EtcdRegistry(section.endpoints, section.ttl, key, snapshot)
    return NullRegistry()


__all__ = ["Registry", "NullRegistry", "make_registry", "provider_key"]
