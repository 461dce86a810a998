"""Services added, replaced and removed while the daemon serves: what the OIP model repository
extension (``RepositoryModelLoad`` / ``Unload`` / ``Index``, gRPC and REST) and ``aiges service``
do.

    add      a name not served: its workers start, its self-test runs, then it is routed to,
             registered and in health
    replace  a name served: the new version starts next to the old one (both run their own
             workers, on the GPUs their entries name), and when its self-test passes
             (``aiges.server.self_test``) new calls and sessions go to it; the old version
             finishes the calls and sessions it has (within ``[aiges] drain_timeout_ms``) and
             stops. A new version that fails to start or fails its self-test is stopped: the
             old one serves on, and the answer says why.
    remove   the service leaves the routing, health and the registry at once; its calls and
             sessions finish (within the drain timeout), then its workers stop.

A load's config is a table in the ``[[service]]`` shape (``wrapper``, ``version``, ``worker``,
``fc``, ``batch``, ``resources``, ``config``) over the daemon's top-level sections; without one,
a served service is replaced by its own entry, its wrapper read afresh. One change at a time
per name; none while the daemon starts or drains.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import structlog

from aiges.config import Config, ConfigError, ServiceSpec, service_spec
from aiges.engine.pool import WorkerInitError
from aiges.errors import AigesError, ErrorCode
from aiges.server.registration import Registrations
from aiges.server.self_test import read_sample, self_test
from aiges.server.service import Service, State
from aiges.server.services import Services

log = structlog.get_logger("aiges.repository")


class Repository:
    def __init__(
        self,
        services: Services,
        config: Config,
        make: Callable[[ServiceSpec], Service],
        registrations: Callable[[], Registrations | None],
        changed: Callable[[], None],
        serving: Callable[[], bool],
    ) -> None:
        """``make``: a new service for an entry (not started); ``registrations``: the daemon's
        (None before it serves); ``changed``: health and the registry follow a change;
        ``serving``: whether the daemon serves (not starting, not draining)."""
        self.services = services
        self.config = config
        self.make = make
        self.registrations = registrations
        self.changed = changed
        self.serving = serving
        self.drain_timeout_s = config.aiges.drain_timeout_ms / 1000
        self._locks: dict[str, asyncio.Lock] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self.failures: dict[str, str] = {}
        """The last failed load's reason, by name (until the name loads)."""

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every service: name, version, state (READY, LOADING, UNAVAILABLE, UNLOADING) and reason."""
        rows = []
        for service in self.services.everything():
            state = {
                State.SERVING: "READY" if service.ready() else "UNAVAILABLE",
                State.LOADING: "LOADING",
                State.RETIRED: "UNLOADING",
                State.STOPPED: "UNLOADING",
            }[service.state]
            reason = "" if state == "READY" else self._reason(service)
            if not ready_only or state == "READY":
                rows.append({"name": service.label, "version": service.version, "state": state, "reason": reason})
        served = {row["name"] for row in rows}
        if not ready_only:
            for name, reason in self.failures.items():
                if name not in served:
                    rows.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": reason})
        return rows

    def _reason(self, service: Service) -> str:
        if service.state is State.RETIRED:
            return "replaced: finishing its calls" if service.successor is not None else "removed: finishing its calls"
        if service.state is State.LOADING:
            return "starting its workers"
        status = service.engine.status()
        return f"{status.workers_ready} of {len(status.workers)} workers ready"

    async def load(self, name: str, table: dict[str, Any] | None) -> dict[str, Any]:
        """Add ``name``, or replace it when it is served; the answer once it serves (raises
        AigesError when it does not: the old version, if any, serves on)."""
        if not name:
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, "name the service to load")
        if not self.serving():
            raise AigesError(ErrorCode.STARTING, "the server is not serving (starting, or draining): no load")
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            raise AigesError(ErrorCode.SESSION_REPEAT, f"service {name!r} is being loaded or unloaded already")
        async with lock:
            started = time.monotonic()
            old = self.services.get(name)
            spec = self._spec(name, table, old)
            try:
                new, outcome = await self._start(spec)
            except AigesError as exc:
                self.failures[name] = exc.message
                raise
            self.failures.pop(name, None)
            registrations = self.registrations()
            if old is None:
                self.services.add(new)
            else:
                self.services.switch(old, new)
            if registrations is not None:
                await registrations.register(new)
                if old is not None:
                    await registrations.deregister(old)  # only its entry under an old version's key
            self.changed()
            if old is not None:
                self._finish(old)
            answer = {
                "ok": True,
                "name": name,
                "version": new.version,
                "replaced": old is not None,
                "workers": len(new.gpus),
                "self_test": outcome,
                "ms": int((time.monotonic() - started) * 1000),
            }
            log.info("service replaced" if old is not None else "service added", **answer)
            return answer

    def _spec(self, name: str, table: dict[str, Any] | None, old: Service | None) -> ServiceSpec:
        if table is None:
            if old is None:
                raise AigesError(
                    ErrorCode.INVALID_PARAM_VALUE, f"no service {name!r} here: give its config (its wrapper at least)"
                )
            return dataclasses.replace(old.spec, name=name)
        if table.get("name", name) != name:
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"the config names {table['name']!r}, not {name!r}")
        if old is not None and "wrapper" not in table:  # a replace changing some keys: over its entry
            entry = {**old.spec.as_dict(), "wrapper": str(old.spec.wrapper_path)}
            table = {
                k: {**entry[k], **v} if isinstance(v, dict) and isinstance(entry.get(k), dict) else v
                for k, v in {**entry, **table}.items()
            }
        try:
            return service_spec({**table, "name": name}, self.config, f"service {name}")
        except ConfigError as exc:
            raise AigesError(ErrorCode.INVALID_PARAM_VALUE, str(exc)) from None

    async def _start(self, spec: ServiceSpec) -> tuple[Service, str]:
        """A new service started and self-tested, not yet routed to; stopped again if it fails."""
        try:
            spec.wrapper_path.stat()
        except OSError as exc:
            raise AigesError(ErrorCode.WRAPPER_INIT, f"wrapper {spec.wrapper_path}: {exc.strerror}") from None
        new = self.make(spec)
        self.services.pending.append(new)
        self.changed()
        try:
            await new.start(self.changed)
            sample = await read_sample(spec.wrapper_path, new.gpus[0])
            outcome = await self_test(new.engine, sample, new.name, f"self-test-{spec.name}")
        except (WorkerInitError, AigesError) as exc:
            self.services.forget(new)
            await new.stop(timeout_s=5.0)
            self.changed()
            reason = str(exc) if isinstance(exc, WorkerInitError) else f"{exc.code}: {exc.message}"
            log.error("service not loaded", service=spec.name, error=reason)
            raise AigesError(ErrorCode.WRAPPER_INIT, f"service {spec.name!r} did not load: {reason}") from None
        except BaseException:
            self.services.forget(new)
            await new.stop(timeout_s=5.0)
            raise
        new.state = State.SERVING
        return new, outcome

    async def unload(self, name: str) -> dict[str, Any]:
        """Remove ``name``: out of routing, health and the registry first, then drained and stopped."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            raise AigesError(ErrorCode.SESSION_REPEAT, f"service {name!r} is being loaded or unloaded already")
        async with lock:
            service = self.services.get(name)
            if service is None:
                raise AigesError(ErrorCode.UNKNOWN_SERVICE, f"no service {name!r} here")
            started = time.monotonic()
            self.failures.pop(name, None)
            self.services.remove(service)
            registrations = self.registrations()
            if registrations is not None:
                await registrations.deregister(service)
            self.changed()
            drained = await service.finish(self.drain_timeout_s)
            self.services.forget(service)
            self.changed()
            answer = {"ok": True, "name": name, "drained": drained, "ms": int((time.monotonic() - started) * 1000)}
            log.info("service removed", **answer)
            return answer

    def _finish(self, old: Service) -> None:
        async def finish() -> None:
            drained = await old.finish(self.drain_timeout_s)
            self.services.forget(old)
            self.changed()
            log.info("old version stopped", service=old.label, drained=drained)

        task = asyncio.create_task(finish())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def close(self) -> None:
        """The daemon stops: old versions still finishing stop with it."""
        for task in list(self._finishing):
            task.cancel()
        for service in list(self.services.retiring) + list(self.services.pending):
            await service.stop(timeout_s=5.0)
