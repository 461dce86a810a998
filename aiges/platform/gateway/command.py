"""``aiges gateway --etcd HOST:2379``: write an HAProxy config, run HAProxy, and keep its servers
in step with the registry until SIGTERM or SIGINT (then HAProxy stops softly: no new
connections, the open ones get ``--stop-grace-s`` to finish)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO

import structlog

from aiges.logs import configure_logging
from aiges.platform.gateway.haproxy_config import Settings
from aiges.platform.gateway.haproxy_process import HaproxyError, HaproxyProcess
from aiges.platform.gateway.registry_watch import RegistryWatch
from aiges.platform.gateway.sync import GatewaySync

log = structlog.get_logger("aiges.gateway")

LISTED_S = 5.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("gateway", help="one HAProxy entry in front of every registered host")
    parser.add_argument("--etcd", required=True, help="etcd endpoints, comma separated (the registry)")
    parser.add_argument("--registry-prefix", default="/aiges/services", help="[registry] prefix of the hosts")
    parser.add_argument("--bind", default="0.0.0.0", help="address the gateway listens on")
    parser.add_argument("--grpc-port", type=int, default=5090, help="gRPC (xsf, OIP, stream) over HTTP/2")
    parser.add_argument("--http-port", type=int, default=8080, help="ASE JSON API, WebSocket, OIP REST")
    parser.add_argument("--stats-port", type=int, default=8404, help="/metrics, /stats, /healthz")
    parser.add_argument("--tls-cert", help="certificate chain (PEM): TLS ends at the gateway, on both ports")
    parser.add_argument("--tls-key", help="its private key (PEM)")
    parser.add_argument("--default-service", default="", help="SERVICE or SERVICE/VERSION for requests naming none")
    parser.add_argument("--slots", type=int, default=32, help="hosts per backend before a reload adds more")
    parser.add_argument("--drain-s", type=float, default=30.0, help="a deregistered host drains this long")
    parser.add_argument("--check-ms", type=int, default=500, help="HAProxy's health check interval per host")
    parser.add_argument("--workdir", help="where haproxy.cfg, maps and the admin socket go (default: a new temp dir)")
    parser.add_argument("--haproxy", default="haproxy", help="the haproxy binary")
    parser.add_argument("--access-log", help="HAProxy's access log (one JSON line a request) to this file")
    parser.add_argument("--no-access-log", action="store_true", help="no access log at all")
    parser.add_argument("--maxconn", type=int, default=4096, help="connections HAProxy accepts at once")
    parser.add_argument("--stop-grace-s", type=float, default=10.0)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))


def tls_pem(cert: str, key: str, workdir: Path) -> Path:
    """HAProxy wants the chain and its key in one file."""
    pem = workdir / "tls.pem"
    pem.touch(mode=0o600)
    pem.write_text(Path(cert).read_text() + "\n" + Path(key).read_text())
    return pem


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    binary = shutil.which(args.haproxy)
    if binary is None:
        print(f"aiges gateway: {args.haproxy} not found (Debian: apt-get install haproxy)", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("aiges gateway: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="aiges-gateway-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        pem = tls_pem(args.tls_cert, args.tls_key, workdir) if args.tls_cert else None
    except OSError as exc:
        print(f"aiges gateway: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        workdir=workdir,
        bind=args.bind,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        stats_port=args.stats_port,
        tls_pem=pem,
        slots=args.slots,
        check_interval_ms=args.check_ms,
        access_log=not args.no_access_log,
        maxconn=args.maxconn,
    )
    output: IO[bytes] | None = open(args.access_log, "ab") if args.access_log else None  # noqa: SIM115
    try:
        return asyncio.run(serve(args, binary, settings, output))
    except HaproxyError as exc:
        print(f"aiges gateway: {exc}", file=sys.stderr)
        return 2
    finally:
        if output is not None:
            output.close()


async def serve(args: argparse.Namespace, binary: str, settings: Settings, output: IO[bytes] | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    haproxy = HaproxyProcess(binary, settings, output)
    sync: GatewaySync | None = None
    registry = RegistryWatch(args.etcd, args.registry_prefix, lambda: sync.changed() if sync else None)
    sync = GatewaySync(settings, haproxy, registry, drain_s=args.drain_s, default_service=args.default_service)
    follow = asyncio.create_task(registry.run())
    with contextlib.suppress(asyncio.TimeoutError):  # no etcd yet: start empty, fill in when it answers
        await asyncio.wait_for(registry.listed.wait(), LISTED_S)
    if not registry.listed.is_set():
        log.warning("registry not reachable yet; starting with no host", etcd=args.etcd)
    tasks: list[asyncio.Task[None]] = [follow]
    try:
        await sync.start()
        log.info(
            "gateway serving",
            grpc=f"{settings.bind}:{settings.grpc_port}",
            http=f"{settings.bind}:{settings.http_port}",
            stats=f"{settings.bind}:{settings.stats_port}",
            tls=settings.tls_pem is not None,
            services=sync.services,
            workdir=str(settings.workdir),
        )
        tasks.append(asyncio.create_task(sync.run()))
        exited = asyncio.create_task(watch_exit(haproxy))
        tasks.append(exited)
        await asyncio.wait([asyncio.create_task(stop.wait()), exited], return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            log.error("haproxy exited", code=haproxy.process.returncode if haproxy.process else None)
            return 1
        log.info("stopping: haproxy finishes its connections", grace_s=args.stop_grace_s)
        return 0
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await haproxy.stop(args.stop_grace_s)


async def watch_exit(haproxy: HaproxyProcess) -> None:
    while haproxy.running:
        await asyncio.sleep(0.2)
