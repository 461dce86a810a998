"""Server lifecycle: listen, start the workers, serve, and stop cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from aiges.config import Config
from aiges.engine.engine import Engine
from aiges.engine.licences import Licences
from aiges.engine.pool import PoolSettings, WorkerInitError, WorkerPool
from aiges.gpu import plan_workers
from aiges.metrics import REGISTRY
from aiges.protocol.handle import HandleGenerator, advertised_ipv4
from aiges.server.stream import StreamService
from aiges.server.xsf import XsfService

log = structlog.get_logger("aiges.server")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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
            realtime=config.aiges.realTimeRlt,
            log_level=config.log.level,
        ))
        self.licences = Licences(config.fc.max)
        self.engine = Engine(self.pool, self.licences, session_ttl_ms=config.fc.ttl, expiry_scan_ms=config.fc.roll)
        self.health = health.aio.HealthServicer()
        self.stopping = asyncio.Event()
        self.port = 0

    async def run(self) -> int:
        megabyte = 1 << 20
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", self.config.service.maxreceive * megabyte),
            ("grpc.max_send_message_length", self.config.service.maxsend * megabyte),
            ("grpc.so_reuseport", 0),
        ])
        host = self.config.service.host
        try:
            self.port = server.add_insecure_port(listen_address(host, self.config.service.port))
        except RuntimeError as exc:
            log.error("cannot listen", address=listen_address(host, self.config.service.port), error=str(exc))
            return 2
        ip = advertised_ipv4(host)
        self.pool.settings.peer_addr = f"{ip}:{self.port}"
        handles = HandleGenerator(ip, self.port)
        xsf = XsfService(self.engine, handles, f"{ip}:{self.port}")
        stream = StreamService(self.engine, handles)
        server.add_generic_rpc_handlers((xsf.rpc_handlers(), stream.rpc_handlers()))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self._set_health(NOT_SERVING)
        await server.start()
        self._serve_metrics()
        self._install_signal_handlers()
        log.info("listening", address=listen_address(host, self.port), workers=len(self.pool.workers),
                 wrapper=str(self.config.wrapper_path))

        starting = asyncio.create_task(self.pool.start())
        stop_wait = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await self.pool.stop(timeout_s=5.0)
            await server.stop(0)
            return 0
        stop_wait.cancel()
        try:
            starting.result()
        except WorkerInitError as exc:
            log.error("wrapper failed to start", error=str(exc))
            print(f"aiges: {exc}", file=sys.stderr)
            await server.stop(0)
            return 2
        self.engine.start()
        await self._set_health(SERVING)
        log.info("serving", address=listen_address(host, self.port), workers=len(self.pool.workers),
                 licences=self.licences.total)

        await self.stopping.wait()
        log.info("stopping")
        await self.health.enter_graceful_shutdown()
        await server.stop(self.config.aiges.drain_timeout_ms / 1000)
        await self.engine.stop()
        await self.pool.stop()
        log.info("stopped")
        return 0

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

    async def _set_health(self, status: int) -> None:
        await self.health.set("", status)
        await self.health.set(self.config.service_name, status)

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
