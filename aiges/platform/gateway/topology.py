"""What HAProxy should look like, from the registry's providers (pure: no I/O).

Each service (name and version, as registered) gets two backends: ``<service>.<version>_grpc``
(HTTP/2 to the hosts' gRPC port: xsf, OIP, native stream, health) and ``<service>.<version>_http``
(HTTP/1.1 to their HTTP front: the ASE JSON API and its WebSockets, OIP REST). Each host holds one
slot, ``s<N>``, the same in every backend, so that an xsf handle (which carries the host's gRPC
address) names its slot through one map. A host is *ready* while it is registered SERVING,
*drain* while registered otherwise (NOT_SERVING: its running calls and sessions go on, nothing new
comes) or after its key went (until ``drain_s`` passes), then *maint* and its slot is free again.
Its weight follows its free licences, relative to the largest licence count in the backend.

Maps (HAProxy map files, changed at run time): ``routes`` (ASE route -> HTTP backend), ``models``
(OIP model name -> HTTP backend), ``services`` (service, and service/version -> gRPC backend,
for the ``aiges-service`` header), ``handles`` (an xsf handle's host part -> slot, for the
``aiges-handle`` header) and ``default`` (the backends for requests that name no service).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WEIGHT_MAX = 256
READY, DRAIN, MAINT = "ready", "drain", "maint"


def backend_base(service: str, version: str) -> str:
    """A backend name HAProxy accepts, from the registered service and version."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{service}.{version}")


def handle_prefix(address: str) -> str | None:
    """The 12 hex digits an xsf handle starts with (after its "0") for a host at ``address``:
    its IPv4 address and port (``aiges.protocol.handle``); None for other addresses."""
    host, _, port = address.rpartition(":")
    try:
        packed = ipaddress.IPv4Address(host).packed
        return packed.hex() + f"{int(port) & 0xFFFF:04x}"
    except ValueError:
        return None


def split_address(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Provider:
    service: str
    version: str
    address: str  # host:port of its gRPC port, the registry key's last part
    value: Mapping[str, Any]

    @property
    def serving(self) -> bool:
        return self.value.get("health") == "SERVING"


@dataclass(frozen=True)
class Server:
    """One slot of one backend, as HAProxy should have it."""

    address: str  # host:port; "" in maint
    state: str
    weight: int


@dataclass
class Topology:
    backends: dict[str, dict[int, Server]] = field(default_factory=dict)
    """backend name -> slot -> server (slots not listed: maint, no address)."""
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    """map name (routes, models, services, handles, default) -> key -> value."""

    @property
    def services(self) -> list[str]:
        return sorted({name.rsplit("_", 1)[0] for name in self.backends})


def weight(free: int, largest: int) -> int:
    """A host's weight: its free licences against the backend's largest licence count, 1..256."""
    if largest <= 0:
        return 1
    return max(1, min(WEIGHT_MAX, round(WEIGHT_MAX * max(free, 0) / largest)))


@dataclass
class Slots:
    """Which slot each host holds; a host keeps its slot while it is known at all."""

    size: int
    taken: dict[str, int] = field(default_factory=dict)

    def slot(self, address: str) -> int | None:
        found = self.taken.get(address)
        if found is not None:
            return found
        used = set(self.taken.values())
        free = next((n for n in range(1, self.size + 1) if n not in used), None)
        if free is not None:
            self.taken[address] = free
        return free

    def release(self, address: str) -> None:
        self.taken.pop(address, None)

    @property
    def full(self) -> bool:
        return len(self.taken) >= self.size


def build(
    providers: Iterable[Provider], leaving: Iterable[Provider], slots: Slots, default_service: str = ""
) -> tuple[Topology, list[str]]:
    """The topology for ``providers`` (registered now) and ``leaving`` (as last seen, before
    their keys went: they drain). Returns it, and the hosts that found no free slot."""
    topology = Topology()
    unplaced: list[str] = []
    registered = list(providers)
    present = {(p.service, p.version, p.address) for p in registered}
    members: dict[str, list[tuple[Provider, bool]]] = {}
    for provider in registered:
        members.setdefault(backend_base(provider.service, provider.version), []).append((provider, False))
    for provider in leaving:
        if (provider.service, provider.version, provider.address) not in present:
            members.setdefault(backend_base(provider.service, provider.version), []).append((provider, True))
    routes: dict[str, str] = {}
    models: dict[str, str] = {}
    services: dict[str, str] = {}
    handles: dict[str, str] = {}
    for base, entries in sorted(members.items()):
        grpc, http = topology.backends.setdefault(f"{base}_grpc", {}), topology.backends.setdefault(f"{base}_http", {})
        largest = max(
            (int(p.value.get("licences_total") or 0) for p, gone in entries if p.serving and not gone), default=0
        )
        for provider, gone in sorted(entries, key=lambda entry: entry[0].address):
            slot = slots.slot(provider.address)
            if slot is None:
                unplaced.append(provider.address)
                continue
            state = READY if provider.serving and not gone else DRAIN
            share = weight(int(provider.value.get("licences_free") or 0), largest)
            grpc[slot] = Server(provider.address, state, share)
            http_address = str(provider.value.get("http") or "")
            if http_address:
                http[slot] = Server(http_address, state, share)
            prefix = handle_prefix(provider.address)
            if prefix is not None:
                handles[prefix] = f"s{slot}"
            if gone:
                continue
            if provider.value.get("route"):
                routes.setdefault(str(provider.value["route"]), f"{base}_http")
            if provider.value.get("model"):
                models.setdefault(str(provider.value["model"]), f"{base}_http")
            services[f"{provider.service}/{provider.version}"] = f"{base}_grpc"
            services.setdefault(provider.service, f"{base}_grpc")
    bases = sorted(b.rsplit("_", 1)[0] for b in services.values())
    chosen = ""
    if default_service:
        chosen = services.get(default_service, "").rsplit("_", 1)[0]
    chosen = chosen or (bases[0] if bases else "")
    defaults = {"grpc": f"{chosen}_grpc", "http": f"{chosen}_http"} if chosen else {}
    topology.maps = {"routes": routes, "models": models, "services": services, "handles": handles, "default": defaults}
    return topology, unplaced
