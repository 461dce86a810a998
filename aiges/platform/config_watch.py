"""A serving host follows its group's current config version (``aiges serve --etcd ...``).

It watches ``current`` in etcd and, when it moves (a push, or a rollback), fetches that version
and applies what can change live: licences, log level and the keys file at once, the workers'
settings through a reload with no dropped call (``config_changes``). The rest is reported as
needing a restart (in the log, the metrics and the cmdserver status) and left as it is. The
version a host runs is in its registry value and its metrics; each version applied is cached on
disk. Losing etcd changes nothing: the host serves on with what it runs and watches again when
etcd is back, catching up on any version it missed.

Changes are applied one at a time, in the server's event loop; when versions come faster than
they apply, the latest wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import aetcd
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from aiges.config import Config, ConfigError
from aiges.errors import AigesError
from aiges.logs import set_log_level
from aiges.metrics import REGISTRY
from aiges.platform.config_changes import plan, restart_needed
from aiges.platform.config_source import ConfigCache, Fetched, Overrides, materialise, write_keys
from aiges.platform.config_store import ConfigStore, Current, Scope, Version
from aiges.platform.etcd_liveness import retry_delay, watched
from aiges.registry.etcd import parse_endpoints

log = structlog.get_logger("aiges.config")


class Registry(Protocol):
    def changed(self) -> None: ...


class ServingApp(Protocol):
    """What the watch uses of ``aiges.server.app.App``: the engine (``resize_licences``), the
    reloader, the registry (to rewrite its value) and the config it started with."""

    @property
    def engine(self) -> Any: ...

    @property
    def reloader(self) -> Any: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def config(self) -> Config: ...


class ConfigWatch:
    def __init__(
        self, endpoints: str, scope: Scope, cache: ConfigCache, start: Fetched, base: Path, overrides: Overrides
    ) -> None:
        """``start``: the version the host starts from (already made into its ``Config``)."""
        self.endpoints = endpoints
        self.scope = scope
        self.cache = cache
        self.base = base
        self.overrides = overrides
        self.started_config = materialise(start.version, scope, base, overrides)
        self._config = self.started_config
        self._version = start.version
        self.origin = start.origin
        self.connected = False
        self.last: dict[str, Any] | None = None
        self.counts = {"applied": 0, "failed": 0}
        self._wanted: int | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._app: ServingApp | None = None
        self._store: ConfigStore | None = None
        self._collector = _Collector(self)

    # -- what the server reads ---------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config of the version running now (a reload reads this)."""
        return self._config

    def reread(self) -> Config:
        return self._config

    @property
    def version(self) -> int:
        return self._version.number

    def restart_needed(self) -> list[str]:
        return restart_needed(self.started_config, self._config)

    def status(self) -> dict[str, Any]:
        """For the cmdserver status (``aiges status``)."""
        return {
            "source": "etcd",
            "project": self.scope.project,
            "group": self.scope.group,
            "service": self.scope.service,
            "version": self._version.number,
            "version_by": self._version.by,
            "version_at": self._version.at,
            "started_from": self.origin,
            "etcd_connected": self.connected,
            "restart_needed": self.restart_needed(),
            "last_change": self.last,
            "counts": dict(self.counts),
        }

    def registry_fields(self) -> dict[str, Any]:
        """Added to the registry value: where this host's config comes from and which version."""
        return {
            "config": {
                "project": self.scope.project,
                "group": self.scope.group,
                "service": self.scope.service,
                "version": self._version.number,
            }
        }

    # -- life --------------------------------------------------------------------------------------

    async def start(self, app: ServingApp) -> None:
        """Follow etcd from now on (the server is SERVING)."""
        self._app = app
        with contextlib.suppress(ValueError):  # already registered: a second App in one process
            REGISTRY.register(self._collector)
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._apply_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(self._collector)

    # -- following etcd ----------------------------------------------------------------------------

    def _want(self, number: int) -> None:
        self._wanted = number
        self._wake.set()

    async def _follow(self) -> None:
        endpoints = parse_endpoints(self.endpoints)
        attempt = 0
        while True:
            host, port = endpoints[attempt % len(endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=5)
            try:
                store = ConfigStore(client)
                current, revision = await store.current(self.scope)
                self._store = store
                if not self.connected:
                    self.connected = True
                    log.info("config centre connected", endpoint=f"{host}:{port}", scope=self.scope.label())
                attempt = 0
                if current is not None:
                    self._want(current.number)
                watch = await client.watch(self.scope.current_key, start_revision=revision + 1)
                async for event in watched(client, watch, self.scope.current_key):
                    if event.kind == "PUT":
                        self._want(Current.decode(event.kv.value).number)
                    else:
                        log.warning("the group's current config was deleted; serving on", scope=self.scope.label())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd lost: serve on, try the next member
                self._store = None
                if self.connected:
                    self.connected = False
                    log.warning(
                        "config centre lost; serving on with the current version",
                        version=self.version,
                        endpoint=f"{host}:{port}",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                attempt += 1
                await asyncio.sleep(retry_delay(attempt, len(endpoints)))
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

    async def _apply_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            number, store = self._wanted, self._store
            if number is None or number == self._version.number or store is None:
                continue
            try:
                version = await store.version(self.scope, number)
            except Exception as exc:  # noqa: BLE001 - etcd lost meanwhile: the follower asks again
                log.warning("cannot fetch the config version", version=number, error=f"{type(exc).__name__}: {exc}")
                continue
            if version is None:
                log.error("the current config version is missing from etcd", version=number, scope=self.scope.label())
                continue
            await self.apply(version)

    # -- applying a version ------------------------------------------------------------------------

    async def apply(self, version: Version) -> dict[str, Any]:
        """Go from the running version to ``version``; returns what was done (also ``last``)."""
        app = self._app
        assert app is not None
        began = time.monotonic()
        applied: list[str] = []
        errors: list[str] = []
        try:
            new = materialise(version, self.scope, self.base, self.overrides)
        except ConfigError as exc:
            errors.append(f"the version does not load here: {exc}")
            return self._record(version, began, applied, errors, changed=False)
        steps = plan(self._config, new, self._version.keys, version.keys)
        if steps.licences is not None:
            try:
                await app.engine.resize_licences(steps.licences, timeout_s=app.config.aiges.drain_timeout_ms / 1000)
                applied.append(f"[fc] max {self._config.fc.max} -> {steps.licences}")
            except AigesError as exc:
                errors.append(f"[fc] max: {exc.message}")
                new = dataclasses.replace(new, fc=dataclasses.replace(new.fc, max=self._config.fc.max))
        if steps.log_level is not None:
            set_log_level(steps.log_level)
            applied.append(f"[log] level {self._config.log.level} -> {steps.log_level}")
        if steps.keys:
            try:
                path = write_keys(new, version.keys)
                if path is not None:
                    applied.append(f"keys file {path}")
            except OSError as exc:
                errors.append(f"keys file: {exc}")
        self._config = new
        if steps.reload:
            answer = await app.reloader()
            if answer.get("ok"):
                applied.append(f"workers reloaded: generation {answer['generation']}")
            else:
                errors.append(f"reload: {answer.get('error')}")
        return self._record(version, began, applied, errors, changed=True)

    def _record(
        self, version: Version, began: float, applied: list[str], errors: list[str], *, changed: bool
    ) -> dict[str, Any]:
        previous = self._version.number
        if changed:
            self._version = version
            self.cache.save(Fetched(version, "etcd", time.time()))
        restart = self.restart_needed()
        self.counts["failed" if errors else "applied"] += 1
        self.last = {
            "version": version.number,
            "from": previous,
            "at": time.time(),
            "ms": int((time.monotonic() - began) * 1000),
            "applied": applied,
            "errors": errors,
            "restart_needed": restart,
        }
        event = log.warning if errors else log.info
        event(
            "config version applied" if changed else "config version refused",
            scope=self.scope.label(),
            version=version.number,
            previous=previous,
            applied=applied,
            errors=errors,
            ms=self.last["ms"],
        )
        if restart:
            log.warning("config keys need a restart to take effect", version=version.number, keys=restart)
        if self._app is not None:
            self._app.registry.changed()
        return self.last


class _Collector:
    """``aiges_config_*`` gauges, read at scrape time."""

    def __init__(self, watch: ConfigWatch) -> None:
        self.watch = watch

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        watch = self.watch
        labels = ["project", "group", "service"]
        values = [watch.scope.project, watch.scope.group, watch.scope.service]
        version = GaugeMetricFamily("aiges_config_version", "Config centre version this host runs", labels=labels)
        version.add_metric(values, watch.version)
        yield version
        yield GaugeMetricFamily(
            "aiges_config_restart_needed",
            "Keys of the running config version that take effect only after a restart",
            value=len(watch.restart_needed()),
        )
        yield GaugeMetricFamily(
            "aiges_config_centre_connected", "1 while the config centre (etcd) is watched", value=int(watch.connected)
        )
        changes = CounterMetricFamily("aiges_config_changes", "Config versions applied, by outcome", labels=["outcome"])
        for outcome, count in watch.counts.items():
            changes.add_metric([outcome], count)
        yield changes
