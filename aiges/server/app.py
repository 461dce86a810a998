"""Server lifecycle: listen, start the workers, serve, drain, stop.

start    the port opens at once with health NOT_SERVING; the workers run wrapperInit
serve    health SERVING once enough workers are up; registered in the registry
drain    on SIGTERM or SIGINT: health NOT_SERVING and deregistration first, then new calls and
         sessions are refused (10110, so clients retry elsewhere) while the running ones get up
         to [aiges] drain_timeout_ms to finish; then wrapperFini in every worker and exit 0.
         A second signal exits at once.

SIGHUP (or ``aiges reload``) while serving reloads the wrapper: ``reloader.Reloader``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from aiges.config import Config, load_config
from aiges.engine.admission import Admission
from aiges.engine.engine import Engine, EngineSettings
from aiges.engine.pool import PoolSettings, WorkerInitError
from aiges.gpu import GpuStats, plan_workers
from aiges.metrics import REGISTRY, StateCollector
from aiges.protocol import stream_pb2, xsf_pb2  # noqa: F401 - registers the descriptors reflection serves
from aiges.protocol.handle import HandleGenerator, advertised_ipv4
from aiges.registry import make_registry, provider_key
from aiges.registry.interface import NullRegistry, Registry
from aiges.server.grpc.forwarding import ForwardedCallers, SessionForwarder
from aiges.server.grpc.native_stream import SERVICE as STREAM_SERVICE
from aiges.server.grpc.native_stream import StreamService
from aiges.server.grpc.oip import OipService
from aiges.server.grpc.toolbox import ToolBoxService
from aiges.server.grpc.xsf import XsfService
from aiges.server.health_service import Health, Phase
from aiges.server.host_state import HostState, HostStateError, settings_for
from aiges.server.http import HttpFront
from aiges.server.http.ase import model_route
from aiges.server.model import Model, ModelSource
from aiges.server.reloader import Reloader, worker_settings
from aiges.server.reports import WrapperReports
from aiges.server.security import Security, SecurityError

if TYPE_CHECKING:
    from aiges.platform.config_watch import ConfigWatch

log = structlog.get_logger("aiges.server")

LOAD_STEPS = 20
MAX_PENDING_CALLS = 1 << 16  # calls queued before the server takes them: metadata only, the message is read later


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@dataclass
class Fronts:
    """What ``bind`` made: the gRPC server on the service port, and the address it serves; with
    fronts sharing the port, the local server other fronts pass session calls to
    (``grpc.forwarding``)."""

    server: grpc.aio.Server
    port: int
    ip: str
    local: grpc.aio.Server | None = None

    async def start(self) -> None:
        await self.server.start()
        if self.local is not None:
            await self.local.start()

    async def stop(self, grace_s: float) -> None:
        if self.local is not None:
            await self.local.stop(grace_s)
        await self.server.stop(grace_s)


class App:
    """One server's life, in phases: ``bind`` the port (health answers NOT_SERVING at once),
    ``start`` the workers, ``serve`` until a signal, ``drain``, ``stop``. Everything below the
    fronts is the engine; the app reads its ``status()`` and asks it to ``drain()``."""

    def __init__(
        self, config: Config, reread: Callable[[], Config] | None = None, config_watch: ConfigWatch | None = None
    ) -> None:
        """``reread``: the config loaded again, for a reload (default: the same file);
        ``config_watch``: the config centre's version this server follows (``aiges serve --etcd``)."""
        self.config = config
        self.config_watch = config_watch
        self.http_address = ""
        self.reread = reread or partial(load_config, config.path, config.service_name)
        self.reloader: Reloader | None = None
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.address = ""
        self.gpus = plan_workers(config.worker.gpus, config.worker.count)
        self.registry: Registry = NullRegistry()
        self.reports = WrapperReports(labels_changed=lambda: self.registry.changed())
        self.gpu_stats = GpuStats()
        self.http: HttpFront | None = None
        self.engine: Engine | None = None
        self.health: Health | None = None
        self._signal_tasks: set[asyncio.Future[Any]] = set()
        self.security = Security()
        self.host: HostState | None = None
        """With ``[svcName] reuseport``: the state this front shares with the port's others."""

    def engine_settings(self, peer_addr: str) -> EngineSettings:
        config = self.config
        pool = PoolSettings(
            worker=worker_settings(config, peer_addr),
            gpus=self.gpus,
            exec_timeout_ms=config.worker.exec_timeout_ms,
            shm_bytes=config.worker.shm_mb << 20,
            threads=config.worker.threads,
            ready_timeout_ms=config.worker.ready_timeout_ms,
            start_failures=config.worker.start_failures,
            resource_count=config.resources.max_count,
            resource_bytes=config.resources.max_mb << 20,
        )
        return EngineSettings(
            pool=pool,
            licences=config.fc.max,
            session_ttl_ms=config.fc.ttl,
            expiry_scan_ms=config.fc.roll,
            session_output_bytes=config.fc.session_output_kb << 10,
            default_deadline_ms=config.fc.deadline_ms,
            log_workers=config.log.level == "debug",
        )

    # -- what the app reports -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The server's state: ``cmdserver`` status and the gauges (the registry value is a
        stable part of it, ``registry_value``)."""
        assert self.engine is not None and self.health is not None
        state = self.engine.status()
        info = self.engine.info()
        return {
            "address": self.address,
            "service": self.config.registry.service or (info.service_id if info else ""),
            "version": self.config.registry.version or (info.version if info else ""),
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "phase": self.health.phase.value,
            "health": self.health.status_name(),
            "workers": len(state.workers),
            "workers_ready": state.workers_ready,
            "worker_pids": [w.pid for w in state.workers],
            "worker_restarts": state.worker_restarts,
            "live": state.live,
            "gpus": [w.gpu for w in state.workers if w.gpu],
            "licences_total": state.licences_total,
            "licences_used": state.licences_used,
            "licences_free": state.licences_free,
            "sessions": state.sessions,
            "inflight": state.inflight,
            "labels": dict(self.reports.lb_labels),
            "lb_type": self.engine.lb_type,
            "resources": state.resources,
            "resources_bytes": state.resources_bytes,
            "reload": self.reloader.state() if self.reloader is not None else None,
            "config": self.config_watch.status() if self.config_watch is not None else None,
        }

    def registry_value(self) -> dict[str, Any]:
        """The registry entry's value: only what clients balance on, so that an idle server
        writes nothing (the lease is kept alive on its own). Free licences are rounded down to
        a twentieth of the total, so a busy server rewrites it when its load moves a step."""
        state = self.snapshot()
        step = max(1, state["licences_total"] // LOAD_STEPS)
        stable = (
            "address",
            "service",
            "version",
            "pid",
            "phase",
            "health",
            "workers",
            "workers_ready",
            "gpus",
            "licences_total",
            "labels",
        )
        value = {**{key: state[key] for key in stable}, "licences_free": state["licences_free"] // step * step}
        if state["lb_type"]:  # AILBType's lbType
            value["type"] = state["lb_type"]
        value.update(self.routes())
        if self.config_watch is not None:
            value.update(self.config_watch.registry_fields())
        return value

    def routes(self) -> dict[str, Any]:
        """Where a gateway sends each protocol for this service: the OIP model name, the ASE
        route (POST and WebSocket) and the HTTP front's address (absent without one)."""
        info = self.engine.info() if self.engine is not None else None
        if info is None:
            return {}
        model = Model.of(info, self.config.service_name)
        found: dict[str, Any] = {"model": model.name, "route": model_route(model)}
        if self.http_address:
            found["http"] = self.http_address
        return found

    def service_id(self) -> str | None:
        """The service callers must be allowed for: [registry] service, else the wrapper's serviceId."""
        info = self.engine.info() if self.engine is not None else None
        return self.config.registry.service or (info.service_id if info else None)

    def schema(self) -> dict[str, Any] | None:
        info = self.engine.info() if self.engine is not None else None
        return info.schema if info else None

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
        try:
            self.host = self._join_host()
            self.security = Security.from_config(self.config, self.host)
        except (SecurityError, HostStateError) as exc:
            log.error("cannot start", error=str(exc))
            print(f"aiges: {exc}", file=sys.stderr)
            return 2
        fronts = self.bind()
        if fronts is None:
            return 2
        handles = HandleGenerator(fronts.ip, fronts.port, self.host.front if self.host is not None else 0)
        # with fronts sharing the port, the host's licences and app limits are shared too
        admission = Admission(self.host, self.host) if self.host is not None else None
        settings = self.engine_settings(f"{fronts.ip}:{fronts.port}")
        engine = self.engine = Engine(settings, self.reports.handle, admission=admission)
        self.security.service_id = self.service_id
        health = self.health = Health(engine, self.config.service_name, self.config.worker.min_ready, len(self.gpus))
        self.reloader = Reloader(
            engine, self.reread, self.config.aiges.drain_timeout_ms, lambda: health.phase is Phase.SERVING
        )
        models = ModelSource(engine.info, self.config.service_name)
        self._add_services(fronts, handles, models)
        await health.refresh()
        await fronts.start()
        http = await self._start_http(handles, models)
        if http is False:
            await fronts.stop(0)
            return 2
        self.http = http if isinstance(http, HttpFront) else None
        collector = StateCollector(self.snapshot, self.gpu_stats.read)
        REGISTRY.register(collector)
        self._serve_metrics()
        self._install_signal_handlers()
        log.info(
            "listening",
            address=listen_address(self.config.service.host, fronts.port),
            workers=len(self.gpus),
            wrapper=str(self.config.wrapper_path),
        )
        try:
            code = await self._start_workers(engine)
            if code is not None:
                await fronts.stop(0)
                return code
            await self._serve(engine, health)
            await self._drain(engine, health)
            await self._stop(fronts, engine, health)
            return 0
        finally:
            if self.config_watch is not None:
                await self.config_watch.stop()
            REGISTRY.unregister(collector)
            if self.http is not None:
                await self.http.stop()

    def bind(self) -> Fronts | None:
        megabyte = 1 << 20
        server = grpc.aio.server(
            interceptors=self.security.grpc_interceptors(),
            options=[
                ("grpc.max_receive_message_length", self.config.service.maxreceive * megabyte),
                ("grpc.max_send_message_length", self.config.service.maxsend * megabyte),
                # Off unless asked for: a second server on a taken port must fail, not share it.
                ("grpc.so_reuseport", int(self.config.service.reuseport)),
                # Calls that arrive faster than the server takes them wait in gRPC's queue, which by
                # default cancels beyond 1000: the licences, not the transport, must limit a burst.
                ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            ],
        )
        host = self.config.service.host
        try:
            port = self.security.add_grpc_port(server, listen_address(host, self.config.service.port))
        except RuntimeError as exc:
            log.error("cannot listen", address=listen_address(host, self.config.service.port), error=str(exc))
            return None
        ip = advertised_ipv4(host)
        self.address = self.config.registry.address or f"{ip}:{port}"
        return Fronts(server, port, ip)

    def _add_services(self, fronts: Fronts, handles: HandleGenerator, models: ModelSource) -> None:
        assert self.engine is not None and self.health is not None
        health = self.health
        debug = self.config.log.level == "debug"
        peer = f"{fronts.ip}:{fronts.port}"
        forwarder = None
        if self.host is not None:
            forwarder = SessionForwarder(self.host, self.config.service.maxreceive << 20)
            local = XsfService(self.engine, handles, peer, ForwardedCallers(), debug, front="xsf-local")
            fronts.local = self._local_server(local)
        fronts.server.add_generic_rpc_handlers(
            (
                XsfService(self.engine, handles, peer, self.security.callers, debug, forwarder).rpc_handlers(),
                StreamService(self.engine, handles, self.security.callers).rpc_handlers(),
                ToolBoxService(self.snapshot, self.schema, self.reloader).rpc_handlers(),
                OipService(self.engine, handles, models, lambda: health.serving, self.security.callers).rpc_handlers(),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(health.servicer, fronts.server)
        reflection.enable_server_reflection(
            (
                xsf_pb2.DESCRIPTOR.services_by_name["XsfCall"].full_name,
                xsf_pb2.DESCRIPTOR.services_by_name["ToolBox"].full_name,
                STREAM_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            fronts.server,
        )

    def _local_server(self, xsf: XsfService) -> grpc.aio.Server:
        """The front's local socket, where the other fronts of the port pass on the calls of
        sessions this front holds (no caller check: only local fronts can reach it)."""
        assert self.host is not None
        megabyte = 1 << 20
        limits = [
            ("grpc.max_receive_message_length", self.config.service.maxreceive * megabyte),
            ("grpc.max_send_message_length", self.config.service.maxsend * megabyte),
        ]
        local = grpc.aio.server(options=limits)
        local.add_generic_rpc_handlers((xsf.rpc_handlers(),))
        path = Path(self.host.socket_path)
        path.unlink(missing_ok=True)  # a dead front's, in the slot this one took
        local.add_insecure_port(f"unix:{path}")
        return local

    async def _start_workers(self, engine: Engine) -> int | None:
        """Start the workers, or give up when a signal comes first. None: serving may begin."""
        starting = asyncio.create_task(engine.start())
        stop_wait = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await engine.stop(timeout_s=5.0)
            return 0
        stop_wait.cancel()
        try:
            starting.result()
        except WorkerInitError as exc:
            log.error("wrapper failed to start", error=str(exc))
            print(f"aiges: {exc}", file=sys.stderr)
            return 2
        return None

    async def _serve(self, engine: Engine, health: Health) -> None:
        health.start()
        await health.set_phase(Phase.SERVING)
        snapshot = self.snapshot()
        self.registry = make_registry(
            self.config.registry,
            provider_key(self.config.registry.prefix, snapshot["service"], snapshot["version"], self.address),
            self.registry_value,
        )
        await self.registry.start()
        if self.config_watch is not None:
            await self.config_watch.start(self)
        log.info("serving", address=self.address, workers=len(self.gpus), licences=self.config.fc.max)
        await self.stopping.wait()

    async def _drain(self, engine: Engine, health: Health) -> None:
        """Health NOT_SERVING and deregistration first, then calls and sessions may finish."""
        state = engine.status()
        log.info(
            "draining", inflight=state.inflight, sessions=state.sessions, timeout_ms=self.config.aiges.drain_timeout_ms
        )
        await health.set_phase(Phase.DRAINING)
        await self.registry.deregister()
        if not await engine.drain(self.config.aiges.drain_timeout_ms / 1000):
            state = engine.status()
            log.warning("drain timeout", inflight=state.inflight, sessions=state.sessions)

    async def _stop(self, fronts: Fronts, engine: Engine, health: Health) -> None:
        await fronts.stop(1.0)
        if self.http is not None:
            await self.http.stop()
            self.http = None
        health.stop()
        await engine.stop()
        log.info("stopped")

    async def _start_http(self, handles: HandleGenerator, models: ModelSource) -> HttpFront | None | bool:
        """The HTTP front, when configured; False when its address cannot be bound."""
        listen = self.config.http_listen
        if not listen:
            return None
        assert self.engine is not None and self.health is not None
        health = self.health
        front = HttpFront(
            self.engine,
            handles,
            models,
            lambda: health.serving,
            cors=self.config.http.cors,
            max_body_mb=self.config.service.maxreceive,
            status=self.snapshot,
            middlewares=self.security.http_middlewares(),
            ssl_context=self.security.http_ssl(),
        )
        try:
            bound = await front.start(listen, reuse_port=self.config.service.reuseport)
        except (OSError, ValueError) as exc:
            log.error("cannot serve http", address=listen, error=str(exc))
            await front.stop()
            return False
        host, _, port = bound.rpartition(":")
        if host in ("", "0.0.0.0", "::"):  # every address: advertise the one the gRPC port is reached at
            host = self.address.rpartition(":")[0]
        self.http_address = f"{host}:{port}"
        return front

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
        """SIGHUP: reload the wrapper (the outcome is logged, and in the cmdserver status)."""
        log.info("signal received", signal="SIGHUP")
        if self.reloader is not None:
            task = asyncio.ensure_future(self.reloader())
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
