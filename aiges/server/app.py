"""Server lifecycle: listen, start the services' workers, serve, drain, stop.

start    the port opens at once with health NOT_SERVING; every service's workers run wrapperInit
serve    health SERVING once enough workers of every service are up; each service registered in
         the registry under its own name
drain    on SIGTERM or SIGINT: health NOT_SERVING and deregistration first, then new calls and
         sessions are refused (10110, so clients retry elsewhere) while the running ones get up
         to [aiges] drain_timeout_ms to finish; then wrapperFini in every worker and exit 0.
         A second signal exits at once.

SIGHUP (or ``aiges reload``) while serving reloads every service's wrapper (``reloader``);
``aiges service`` (the OIP model repository) adds, replaces and removes services
(``repository``). A service is ``service.Service``; the fronts are built in ``fronts``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import start_http_server

from aiges.config import Config, ServiceSpec, load_config
from aiges.engine.admission import Admission, LocalCounts
from aiges.engine.pool import WorkerInitError
from aiges.gpu import GpuStats
from aiges.metrics import REGISTRY, StateCollector
from aiges.protocol.handle import HandleGenerator
from aiges.registry.interface import NullRegistry
from aiges.server.fronts import Fronts, Parts, add_grpc_services, bind, listen_address, start_http
from aiges.server.health_service import Health, Phase
from aiges.server.host_state import HostState, HostStateError, settings_for
from aiges.server.http import HttpFront
from aiges.server.http.ase import model_route
from aiges.server.registration import Registrations
from aiges.server.repository import Repository
from aiges.server.security import Security, SecurityError
from aiges.server.service import Service, State
from aiges.server.services import Services
from aiges.server.status import server_snapshot

if TYPE_CHECKING:
    from aiges.platform.config_watch import ConfigWatch

log = structlog.get_logger("aiges.server")


class App:
    """One server's life, in phases: ``bind`` the port (health answers NOT_SERVING at once),
    ``start`` the services' workers, ``serve`` until a signal, ``drain``, ``stop``. Everything
    below the fronts is the services' engines; the app reads their state and asks them to drain."""

    def __init__(
        self, config: Config, reread: Callable[[], Config] | None = None, config_watch: ConfigWatch | None = None
    ) -> None:
        """``reread``: the config loaded again, for a reload (default: the same file);
        ``config_watch``: the config centre's version this server follows (``aiges serve --etcd``)."""
        self.config = config
        self.config_watch = config_watch
        self.http_address = ""
        self.reread = reread or partial(load_config, config.path, config.service_name)
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.address = ""
        self.peer = ""
        self.services = Services(config.listed)
        self.health = Health(self.services, config.service_name)
        self.registrations: Registrations | None = None
        self.repository: Repository | None = None
        self.gpu_stats = GpuStats()
        self.http: HttpFront | None = None
        self._signal_tasks: set[asyncio.Future[Any]] = set()
        self.security = Security()
        self.host: HostState | None = None
        """With ``[svcName] reuseport``: the state this front shares with the port's others."""

    # -- what the app reports -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The server's state: ``cmdserver`` status and the gauges."""
        state = server_snapshot(self.services, self.health, self.address, self.started)
        state["config"] = self.config_watch.status() if self.config_watch is not None else None
        return state

    def routes(self, service: Service) -> dict[str, Any]:
        """Where a gateway sends each protocol for ``service``: its OIP model name, its ASE route
        (POST and WebSocket) and the HTTP front's address (absent without one), and the config
        centre's version this host runs; in its registry value."""
        found: dict[str, Any] = {}
        model = service.models.get()
        if model is not None:
            found = {"model": model.name, "route": model_route(model)}
            if self.http_address:
                found["http"] = self.http_address
        if self.config_watch is not None:
            found.update(self.config_watch.registry_fields())
        return found

    # -- what the config centre uses (``platform.config_watch.ServingApp``): the single form's service

    @property
    def engine(self) -> Any:
        return next(iter(self.services)).engine

    @property
    def reloader(self) -> Callable[[], Any]:
        return self.reload

    @property
    def registry(self) -> Registrations | NullRegistry:
        return self.registrations if self.registrations is not None else NullRegistry()

    def schema(self, name: str = "") -> dict[str, Any] | None:
        service = self.services.get(name) if name else next(iter(self.services), None)
        info = service.engine.info() if service is not None else None
        return info.schema if info else None

    async def reload(self, name: str = "") -> dict[str, Any]:
        """Reload one service (by name), or every one; with one service, its answer as it always was."""
        targets = [s for s in self.services if s.name == name] if name else list(self.services)
        if not targets:
            return {"ok": False, "error": f"no service {name!r} here", "generation": 0, "workers": 0, "ms": 0}
        if len(targets) == 1 and (name or not self.services.several):
            return await targets[0].reloader()
        answers = {service.label: await service.reloader() for service in targets}
        return {
            "ok": all(answer["ok"] for answer in answers.values()),
            "generation": max(answer["generation"] for answer in answers.values()),
            "workers": sum(answer["workers"] for answer in answers.values()),
            "ms": sum(answer["ms"] for answer in answers.values()),
            "retiring": sum(answer["retiring"] for answer in answers.values()),
            "error": "; ".join(f"{n}: {a['error']}" for n, a in answers.items() if not a["ok"]),
            "services": answers,
        }

    def _serving(self) -> bool:
        return self.health.phase is Phase.SERVING

    def new_service(self, spec: ServiceSpec, shared_licences: bool = False) -> Service:
        """A service of this daemon (not started). ``shared_licences``: with fronts sharing the
        port, its licences are the host's (the single form's one service); the others count
        their own in this front, while the apps' limits are the host's for all."""
        admission = None
        if self.host is not None:
            licences = self.host if shared_licences else LocalCounts(spec.fc.max)
            admission = Admission(licences, self.host)
        return Service(spec, self.config, self.peer, admission=admission, reread=self.reread, serving=self._serving)

    def _changed(self) -> None:
        self.health.poke()
        if self.registrations is not None:
            self.registrations.changed()

    # -- phases --------------------------------------------------------------------------------------

    async def run(self) -> int:
        try:
            return await self._run()
        finally:
            if self.host is not None:
                self.host.close()

    def _join_host(self) -> HostState | None:
        service = self.config.service
        if not service.reuseport:
            return None
        settings = settings_for(service.state_dir, service.port, self.config.fc.max, self.config.auth.replay_mb)
        return HostState.join(settings) if settings is not None else None

    async def _run(self) -> int:
        config = self.config
        try:
            self.host = self._join_host()
            self.security = Security.from_config(config, self.host)
        except (SecurityError, HostStateError) as exc:
            log.error("cannot start", error=str(exc))
            print(f"aiges: {exc}", file=sys.stderr)
            return 2
        fronts = bind(config, self.security)
        if fronts is None:
            return 2
        self.address, self.peer = fronts.address, f"{fronts.ip}:{fronts.port}"
        handles = HandleGenerator(fronts.ip, fronts.port, self.host.front if self.host is not None else 0)
        for index, spec in enumerate(config.specs()):
            self.services.add(self.new_service(spec, shared_licences=index == 0 and not config.listed))
        self.security.service_id = self.services.guard_service
        repository = self.repository = Repository(
            self.services, config, self.new_service, lambda: self.registrations, self._changed, self._serving
        )
        parts = Parts(
            config,
            self.security,
            self.services,
            handles,
            self.health,
            repository,
            self.snapshot,
            self.schema,
            self.reload,
        )
        add_grpc_services(fronts, parts, self.host)
        await self.health.refresh()
        await fronts.start()
        http = await start_http(parts, self.snapshot)
        if http is False:
            await fronts.stop(0)
            return 2
        self.http = http if isinstance(http, HttpFront) else None
        if self.http is not None:
            host, _, port = self.http.address.rpartition(":")
            if host in ("", "0.0.0.0", "::"):  # every address: advertise the one the gRPC port is reached at
                host = self.address.rpartition(":")[0]
            self.http_address = f"{host}:{port}"
        collector = StateCollector(self.snapshot, self.gpu_stats.read)
        REGISTRY.register(collector)
        self._serve_metrics()
        self._install_signal_handlers()
        log.info(
            "listening",
            address=listen_address(config.service.host, fronts.port),
            services=[s.spec.label for s in self.services],
            workers=sum(len(s.gpus) for s in self.services),
        )
        try:
            code = await self._start_services()
            if code is not None:
                await fronts.stop(0)
                return code
            await self._serve()
            await self._drain()
            await self._stop(fronts)
            return 0
        finally:
            if self.config_watch is not None:
                await self.config_watch.stop()
            REGISTRY.unregister(collector)
            if self.http is not None:
                await self.http.stop()
            await repository.close()

    async def _start_services(self) -> int | None:
        """Start every service's workers, or give up when a signal comes first. None: serving may begin."""
        services = list(self.services)
        starting: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(s.start(self.health.poke) for s in services))
        )
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(*(s.stop(timeout_s=5.0) for s in services))
            return 0
        stop_wait.cancel()
        try:
            starting.result()
        except WorkerInitError as exc:
            return await self._cannot_serve(services, f"{exc}")
        twice = [name for name, count in Counter(s.name for s in services).items() if count > 1]
        if twice:
            reason = f"two services are named {twice[0]!r} (their wrappers' serviceId): give one a name in [[service]]"
            return await self._cannot_serve(services, reason)
        for service in services:
            service.state = State.SERVING
        return None

    async def _cannot_serve(self, services: list[Service], reason: str) -> int:
        log.error("wrapper failed to start", error=reason)
        print(f"aiges: {reason}", file=sys.stderr)
        await asyncio.gather(*(s.stop(timeout_s=5.0) for s in services))
        return 2

    async def _serve(self) -> None:
        self.health.start()
        await self.health.set_phase(Phase.SERVING)
        registrations = self.registrations = Registrations(
            self.config.registry, self.address, self._registry_health, self.routes
        )
        for service in self.services:
            await registrations.register(service)
        log.info(
            "serving",
            address=self.address,
            services={s.label: {"workers": len(s.gpus), "licences": s.spec.fc.max} for s in self.services},
        )
        if self.config_watch is not None:
            await self.config_watch.start(self)
        await self.stopping.wait()

    def _registry_health(self, service: Service) -> tuple[str, str]:
        return self.health.phase.value, self.health.service_status(service.name)

    async def _drain(self) -> None:
        """Health NOT_SERVING and deregistration first, then calls and sessions may finish."""
        services = self.services.everything()
        timeout_ms = self.config.aiges.drain_timeout_ms
        states = [s.engine.status() for s in services]
        log.info(
            "draining",
            inflight=sum(s.inflight for s in states),
            sessions=sum(s.sessions for s in states),
            timeout_ms=timeout_ms,
        )
        await self.health.set_phase(Phase.DRAINING)
        if self.registrations is not None:
            await self.registrations.deregister_all()
        drained = await asyncio.gather(*(s.engine.drain(timeout_ms / 1000) for s in services))
        for service, done in zip(services, drained, strict=True):
            if not done:
                state = service.engine.status()
                log.warning("drain timeout", service=service.label, inflight=state.inflight, sessions=state.sessions)

    async def _stop(self, fronts: Fronts) -> None:
        await fronts.stop(1.0)
        if self.http is not None:
            await self.http.stop()
            self.http = None
        self.health.stop()
        await asyncio.gather(*(s.stop() for s in self.services.everything()))
        log.info("stopped")

    def _serve_metrics(self) -> None:
        section = self.config.metrics
        if not section.port:
            return
        host = section.host or self.config.service.host
        try:
            start_http_server(section.port, addr=host, registry=REGISTRY)
        except OSError as exc:
            log.error("cannot serve metrics", address=listen_address(host, section.port), error=str(exc))
            return
        log.info("metrics", address=listen_address(host, section.port), path="/metrics")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_reload_signal(self) -> None:
        """SIGHUP: reload every service's wrapper (the outcome is logged, and in the cmdserver status)."""
        log.info("signal received", signal="SIGHUP")
        task = asyncio.ensure_future(self.reload())
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second signal, exiting now", signal=sig.name)
            sys.stdout.flush()
            os._exit(1)
        log.info("signal received", signal=sig.name)
        self.stopping.set()


def serve(config: Config, reread: Callable[[], Config] | None = None, config_watch: ConfigWatch | None = None) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(App(config, reread, config_watch).run())
    return uvloop.run(App(config, reread, config_watch).run())
