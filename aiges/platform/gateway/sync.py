"""Keeps HAProxy in step with the registry.

On every registry change (and once a second, for draining hosts whose time is up) the wanted
topology is built again and compared with what was last applied: only the servers and map
entries that differ are sent to HAProxy's runtime API. A service seen for the first time, or more
hosts than slots, makes a new haproxy.cfg and a reload (``haproxy_process``); after it everything
is applied again. A host whose key went drains until ``drain_s`` passes or HAProxy's checks find
it gone, then its slots go to maintenance and are free again. Four times a second HAProxy's own
view of its servers (``show servers state``: its checks mark a host DOWN within about a second
when it stops answering) is read and each host's change is logged, so the log says when the
gateway stopped sending to a host and why.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from aiges.platform.gateway.haproxy_config import MAPS, Settings, render, render_map
from aiges.platform.gateway.haproxy_process import HaproxyError, HaproxyProcess
from aiges.platform.gateway.registry_watch import RegistryWatch
from aiges.platform.gateway.runtime_api import RuntimeApiError, ServerState
from aiges.platform.gateway.topology import MAINT, Provider, Server, Slots, Topology, build

log = structlog.get_logger("aiges.gateway")

OBSERVE_S = 0.25
TICK_S = 1.0
EMPTY = Server("", MAINT, 1)


@dataclass
class Leaving:
    provider: Provider
    since: float


@dataclass
class Applied:
    servers: dict[tuple[str, int], Server] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {name: {} for name in MAPS})
    maps_known: bool = True
    """False after a failure: the maps are cleared and written whole on the next pass."""


class GatewaySync:
    def __init__(
        self,
        settings: Settings,
        haproxy: HaproxyProcess,
        registry: RegistryWatch,
        *,
        drain_s: float,
        default_service: str,
    ) -> None:
        self.settings = settings
        self.haproxy = haproxy
        self.registry = registry
        self.drain_s = drain_s
        self.default_service = default_service
        self.slots = Slots(settings.slots)
        self.services: list[str] = []
        """The backend bases the running haproxy.cfg has."""
        self.leaving: dict[tuple[str, str, str], Leaving] = {}
        self.known: dict[tuple[str, str, str], Provider] = {}
        self.applied = Applied()
        self.observed: dict[str, str] = {}
        """Each host's status as HAProxy sees it in its gRPC backends (UP, DOWN, DRAIN, MAINT)."""
        self.topology = Topology()
        self._dirty = asyncio.Event()
        self._default = ""
        self._unplaced: list[str] = []

    # -- start -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the config for the services registered now, start HAProxy, apply."""
        topology = self._wanted()
        self.services = topology.services
        self._write_files(topology)
        await self.haproxy.start()
        self._fresh_slots()
        await self._apply(topology)

    def changed(self) -> None:
        """The registry changed (called by ``RegistryWatch``)."""
        self._dirty.set()

    async def run(self) -> None:
        observer = asyncio.create_task(self._observe())
        try:
            while True:
                try:
                    await asyncio.wait_for(self._dirty.wait(), TICK_S)
                except asyncio.TimeoutError:
                    if not self.leaving:
                        continue
                self._dirty.clear()
                await self.sync()
        finally:
            observer.cancel()

    # -- one pass ----------------------------------------------------------------------------------

    async def sync(self) -> None:
        topology = self._wanted()
        try:
            if set(topology.services) - set(self.services) or self._unplaced:
                await self._reconfigure(topology)
            else:
                await self._apply(topology)
        except (RuntimeApiError, HaproxyError) as exc:
            log.error("haproxy not updated; trying again", error=str(exc))
            self.applied = Applied(maps_known=False)  # unknown: send everything next time
            self._dirty.set()
            await asyncio.sleep(TICK_S)

    def _wanted(self) -> Topology:
        now = time.monotonic()
        current = dict(self.registry.providers)
        for key, provider in self.known.items():
            if key not in current and key not in self.leaving:
                self.leaving[key] = Leaving(provider, now)
                log.info("host deregistered: draining", address=provider.address, service=provider.service)
        for key, entry in list(self.leaving.items()):
            # back, drained long enough, or gone for good (HAProxy's checks find nothing there)
            gone = self.observed.get(entry.provider.address) == "DOWN"
            if key in current or gone or now - entry.since >= self.drain_s:
                self.leaving.pop(key)
        self.known = current
        used = {p.address for p in current.values()} | {entry.provider.address for entry in self.leaving.values()}
        for address in list(self.slots.taken):
            if address not in used:
                self.slots.release(address)
        # the default service stays the one it is while it is there: a new service does not take it
        preferred = self.default_service or self._default
        topology, unplaced = build(
            current.values(), [entry.provider for entry in self.leaving.values()], self.slots, preferred
        )
        chosen = topology.maps["default"].get("grpc", "")
        self._default = next(
            (key for key, value in topology.maps["services"].items() if value == chosen and "/" in key), ""
        )
        self._unplaced = unplaced
        self.topology = topology
        return topology

    async def _reconfigure(self, topology: Topology) -> None:
        if self._unplaced:
            self.slots.size *= 2
            self.settings = _with_slots(self.settings, self.slots.size)
            self.haproxy.settings = self.settings
            log.info("more hosts than slots: doubling them", slots=self.slots.size, waiting=self._unplaced)
            topology = self._wanted()
        self.services = sorted(set(self.services) | set(topology.services))
        self._write_files(topology)
        await self.haproxy.reload()
        # the new worker took every server's state from the server-state-file; each is sent again
        # all the same, so that nothing rests on what that file keeps
        self.applied.servers = {}
        await self._apply(topology)

    def _write_files(self, topology: Topology) -> None:
        """haproxy.cfg and the map files HAProxy will read at its next start or reload."""
        for name in MAPS:
            entries = topology.maps.get(name, {})
            self.settings.map_file(name).write_text(render_map(entries))
            self.applied.maps[name] = dict(entries)
        self.settings.config_file.write_text(render(self.settings, self.services))

    def _fresh_slots(self) -> None:
        """After a start: every slot is in maintenance (``disabled`` in the config)."""
        for base in self.services:
            for suffix in ("_grpc", "_http"):
                for slot in range(1, self.slots.size + 1):
                    self.applied.servers.setdefault((base + suffix, slot), EMPTY)

    async def _apply(self, topology: Topology) -> None:
        api = self.haproxy.api
        changed_hosts: dict[str, str] = {}
        for base in self.services:
            for suffix in ("_grpc", "_http"):
                backend = base + suffix
                wanted = topology.backends.get(backend, {})
                for slot in range(1, self.slots.size + 1):
                    server = wanted.get(slot, EMPTY)
                    previous = self.applied.servers.get((backend, slot))
                    if previous == server:
                        continue
                    await api.set_server(backend, f"s{slot}", server.address, server.state, server.weight)
                    self.applied.servers[(backend, slot)] = server
                    if suffix != "_grpc":
                        continue
                    if server.address and (previous is None or previous.state != server.state):
                        changed_hosts[server.address] = server.state
                    elif not server.address and previous is not None and previous.address:
                        changed_hosts[previous.address] = MAINT  # gone: its slot is free again
        if not self.applied.maps_known:
            for name in MAPS:
                await api.checked(f"clear map {self.settings.map_file(name)}")
                self.applied.maps[name] = {}
            self.applied.maps_known = True
        for name in MAPS:
            wanted_map, applied_map = topology.maps.get(name, {}), self.applied.maps.setdefault(name, {})
            path = self.settings.map_file(name)
            for key in list(applied_map):
                if key not in wanted_map:
                    await api.del_map(path, key)
                    applied_map.pop(key)
            for key, value in wanted_map.items():
                if applied_map.get(key) != value:
                    await api.set_map(path, key, value, known=key in applied_map)
                    applied_map[key] = value
            path.write_text(render_map(wanted_map))
        for address, state in changed_hosts.items():
            log.info("host routed", address=address, state=state)

    # -- HAProxy's own view ------------------------------------------------------------------------

    async def _observe(self) -> None:
        while True:
            await asyncio.sleep(OBSERVE_S)
            try:
                states = await self.haproxy.api.servers()
            except RuntimeApiError:
                continue
            self._note(states)

    def _note(self, states: list[ServerState]) -> None:
        seen: dict[str, str] = {}
        for state in states:
            if not state.backend.endswith("_grpc") or state.address.startswith("0.0.0.0"):
                continue
            previous = seen.get(state.address)
            # a host is UP if any of its gRPC backends would send it traffic
            if previous != "UP":
                seen[state.address] = state.status
        for address, status in seen.items():
            if self.observed.get(address) != status:
                log.info("haproxy server state", address=address, status=status, was=self.observed.get(address))
        self.observed = seen


def _with_slots(settings: Settings, slots: int) -> Settings:
    from dataclasses import replace

    return replace(settings, slots=slots)
