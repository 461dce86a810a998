"""Server lifecycle: listen, start the workers, serve, drain, stop.

    start    the port opens at once with health NOT_SERVING; the workers run wrapperInit
    serve    health SERVING once enough workers are up; registered in the registry
    drain    on SIGTERM or SIGINT: health NOT_SERVING and deregistration first, then new calls and
             sessions are refused (10110, so clients retry elsewhere) while the running ones get up
             to [aiges] drain_timeout_ms to finish; then wrapperFini in every worker and exit 0.
             A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from aiges.config import Config
from aiges.engine.engine import Engine
from aiges.engine.licences import Licences
from aiges.engine.pool import PoolSettings, WorkerInitError, WorkerPool
from aiges.gpu import GpuStats, plan_workers
from aiges.metrics import REGISTRY, StateCollector
from aiges.protocol import stream_pb2, xsf_pb2  # noqa: F401 - registers the descriptors reflection serves
from aiges.protocol.handle import HandleGenerator, advertised_ipv4
from aiges.protocol.oip import Model
from aiges.registry import make_registry, provider_key
from aiges.registry.base import NullRegistry, Registry
from aiges.server.health import Health, Phase
from aiges.server.http import HttpFront
from aiges.server.oip import OipService
from aiges.server.reports import WrapperReports
from aiges.server.stream import SERVICE as STREAM_SERVICE
from aiges.server.stream import StreamService
from aiges.server.toolbox import ToolBoxService
from aiges.server.xsf import XsfService

log = structlog.get_logger("aiges.server")

DRAIN_POLL_S = 0.05
LOAD_STEPS = 20
MAX_PENDING_CALLS = 1 << 16  # calls queued before the server takes them: metadata only, the message is read later


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        gpus = plan_workers(config.worker.gpus, config.worker.count)
        self.pool = WorkerPool(PoolSettings(
            wrapper=str(config.wrapper_path),
            wrapper_config=config.wrapper,
            gpus=gpus,
            exec_timeout_ms=config.worker.exec_timeout_ms,
            header_pass=config.header_pass,
            shm_bytes=config.worker.shm_mb << 20,
            batch_size=config.batch.max_size,
            batch_delay_ms=config.batch.max_delay_ms,
            threads=config.worker.threads,
            async_mode=config.aiges.asyncMode,
            realtime=config.aiges.realTimeRlt,
            log_level=config.log.level,
            ready_timeout_ms=config.worker.ready_timeout_ms,
            start_failures=config.worker.start_failures,
        ))
        self.licences = Licences(config.fc.max)
        self.engine = Engine(self.pool, self.licences, session_ttl_ms=config.fc.ttl, expiry_scan_ms=config.fc.roll,
                             session_output_bytes=config.fc.session_output_kb << 10)
        self.health = Health(self.pool, config.service_name, config.worker.min_ready)
        self.gpu_stats = GpuStats()
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.port = 0
        self.address = ""
        self.http: HttpFront | None = None
        self.registry: Registry = NullRegistry()
        self.reports = WrapperReports(labels_changed=lambda: self.registry.changed())
        self.pool.on_report = self.reports.handle

    def snapshot(self) -> dict:
        """The server's state: ``cmdserver`` status and the gauges (the registry value is a
        stable part of it, ``registry_value``)."""
        info = next((w.info for w in self.pool.workers if w.info is not None), None)
        return {
            "address": self.address,
            "service": self.config.registry.service or (info.service_id if info else ""),
            "version": self.config.registry.version or (info.version if info else ""),
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "phase": self.health.phase.value,
            "health": self.health.status_name(),
            "workers": len(self.pool.workers),
            "workers_ready": self.pool.ready_count,
            "worker_pids": [w.info.pid if w.info and w.ready else None for w in self.pool.workers],
            "worker_restarts": self.pool.restart_count,
            "live": self.pool.live,
            "gpus": [w.gpu for w in self.pool.workers if w.gpu],
            "licences_total": self.licences.total,
            "licences_used": self.licences.used,
            "licences_free": self.licences.free,
            "sessions": len(self.engine.sessions),
            "inflight": self.engine.inflight,
            "labels": dict(self.reports.lb_labels),
        }

    def registry_value(self) -> dict:
        """The registry entry's value: only what clients balance on, so that an idle server
        writes nothing (the lease is kept alive on its own). Free licences are rounded down to
        a twentieth of the total, so a busy server rewrites it when its load moves a step."""
        state = self.snapshot()
        step = max(1, state["licences_total"] // LOAD_STEPS)
        stable = ("address", "service", "version", "pid", "phase", "health", "workers", "workers_ready", "gpus",
                  "licences_total", "labels")
        return {**{key: state[key] for key in stable}, "licences_free": state["licences_free"] // step * step}

    def schema(self) -> dict | None:
        info = next((w.info for w in self.pool.workers if w.info is not None), None)
        return info.schema if info else None

    def model(self) -> Model | None:
        """The model the OIP and HTTP fronts serve: the wrapper's serviceId (else the service
        section's name) and version; None until a worker has initialised."""
        info = next((w.info for w in self.pool.workers if w.info is not None), None)
        if info is None:
            return None
        return Model(name=info.service_id or self.config.service_name, version=info.version or "1",
                     schema=info.schema, sessions="stream" in info.capabilities)

    async def run(self) -> int:
        megabyte = 1 << 20
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", self.config.service.maxreceive * megabyte),
            ("grpc.max_send_message_length", self.config.service.maxsend * megabyte),
            ("grpc.so_reuseport", 0),
            # Calls that arrive faster than the server takes them wait in gRPC's queue, which by
            # default cancels beyond 1000: the licences, not the transport, must limit a burst.
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ])
        host = self.config.service.host
        try:
            self.port = server.add_insecure_port(listen_address(host, self.config.service.port))
        except RuntimeError as exc:
            log.error("cannot listen", address=listen_address(host, self.config.service.port), error=str(exc))
            return 2
        ip = advertised_ipv4(host)
        self.address = self.config.registry.address or f"{ip}:{self.port}"
        self.pool.settings.peer_addr = f"{ip}:{self.port}"
        handles = HandleGenerator(ip, self.port)
        debug = self.config.log.level == "debug"
        server.add_generic_rpc_handlers((
            XsfService(self.engine, handles, f"{ip}:{self.port}", debug=debug).rpc_handlers(),
            StreamService(self.engine, handles).rpc_handlers(),
            ToolBoxService(self.snapshot, self.schema).rpc_handlers(),
            OipService(self.engine, handles, self.model, lambda: self.health.serving).rpc_handlers(),
        ))
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        reflection.enable_server_reflection((
            xsf_pb2.DESCRIPTOR.services_by_name["XsfCall"].full_name,
            xsf_pb2.DESCRIPTOR.services_by_name["ToolBox"].full_name,
            STREAM_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ), server)
        await self.health.refresh()
        await server.start()
        http = await self._start_http(handles)
        if http is False:
            await server.stop(0)
            return 2
        self.http = http
        collector = StateCollector(self.snapshot, self.gpu_stats.read)
        REGISTRY.register(collector)
        self._serve_metrics()
        self._install_signal_handlers()
        log.info("listening", address=listen_address(host, self.port), workers=len(self.pool.workers),
                 wrapper=str(self.config.wrapper_path))
        try:
            code = await self._start_workers()
            if code is not None:
                await server.stop(0)
                return code
            return await self._serve_until_stopped(server)
        finally:
            REGISTRY.unregister(collector)
            if http:
                await http.stop()

    async def _start_workers(self) -> int | None:
        """Start the pool, or give up when a signal comes first. None: serving may begin."""
        starting = asyncio.create_task(self.pool.start())
        stop_wait = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await self.pool.stop(timeout_s=5.0)
            return 0
        stop_wait.cancel()
        try:
            starting.result()
        except WorkerInitError as exc:
            log.error("wrapper failed to start", error=str(exc))
            print(f"aiges: {exc}", file=sys.stderr)
            return 2
        return None

    async def _serve_until_stopped(self, server: grpc.aio.Server) -> int:
        self.engine.start()
        self.health.start()
        await self.health.set_phase(Phase.SERVING)
        snapshot = self.snapshot()
        self.registry = registry = make_registry(
            self.config.registry,
            provider_key(self.config.registry.prefix, snapshot["service"], snapshot["version"], self.address),
            self.registry_value,
        )
        await registry.start()
        log.info("serving", address=self.address, workers=len(self.pool.workers), licences=self.licences.total)

        await self.stopping.wait()
        log.info("draining", inflight=self.engine.inflight, sessions=len(self.engine.sessions),
                 timeout_ms=self.config.aiges.drain_timeout_ms)
        await self.health.set_phase(Phase.DRAINING)
        await registry.deregister()
        self.engine.draining = True
        deadline = time.monotonic() + self.config.aiges.drain_timeout_ms / 1000
        while not self.engine.idle() and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        if not self.engine.idle():
            log.warning("drain timeout", inflight=self.engine.inflight, sessions=len(self.engine.sessions))
        await server.stop(1.0)
        if self.http is not None:
            await self.http.stop()
        self.health.stop()
        await self.engine.stop()
        await self.pool.stop()
        log.info("stopped")
        return 0

    async def _start_http(self, handles: HandleGenerator) -> HttpFront | None | bool:
        """The HTTP front, when configured; False when its address cannot be bound."""
        listen = self.config.http_listen
        if not listen:
            return None
        front = HttpFront(self.engine, handles, self.model,
                          lambda: self.health.serving, cors=self.config.http.cors,
                          max_body_mb=self.config.service.maxreceive)
        try:
            await front.start(listen)
        except (OSError, ValueError) as exc:
            log.error("cannot serve http", address=listen, error=str(exc))
            await front.stop()
            return False
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

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second signal, exiting now", signal=sig.name)
            sys.stdout.flush()
            os._exit(1)
        log.info("signal received", signal=sig.name)
        self.stopping.set()


def serve(config: Config) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(App(config).run())
    return uvloop.run(App(config).run())
