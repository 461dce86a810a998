"""The haproxy.cfg ``aiges gateway`` writes: frontends, one pair of backends per service, and
the maps that route between them (their contents change at run time, not here).

    frontend grpc    HTTP/2 (h2c, or h2 over TLS): xsf, OIP, the native stream, health.
                     Backend: the ``aiges-service`` header's service, else the default one.
                     A request with ``aiges-handle`` (an xsf session's later calls) goes to the
                     host the handle names; others to the least-loaded host by weight.
    frontend http    HTTP/1.1 (and h2 over TLS): the ASE JSON API and its WebSockets by their
                     route, OIP REST by its model name, else the default service.
    frontend stats   /metrics (Prometheus), /stats (HAProxy's page), /healthz (the gateway's).

Retries: a call that never reached a host (connection refused or timed out) is always sent to
another one; a call lost on its way (the host died with it in flight, or answered 503: refused,
not run) only when the request says ``aiges-idempotent: 1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAPS = ("routes", "models", "services", "handles", "default")

ACCESS_LOG_FORMAT = (
    '{\\"t\\":%Ts.%ms,\\"frontend\\":\\"%f\\",\\"backend\\":\\"%b\\",\\"server\\":\\"%s\\",'
    '\\"address\\":\\"%si:%sp\\",\\"status\\":%ST,\\"retries\\":\\"%rc\\",\\"ms\\":%Tt,'
    '\\"termination\\":\\"%ts\\",\\"path\\":\\"%HP\\"}'
)
"""One JSON object per request (accept time in epoch seconds, the host that answered, retries:
"+N" when redispatched)."""


@dataclass(frozen=True)
class Settings:
    workdir: Path
    bind: str = "0.0.0.0"
    grpc_port: int = 5090
    http_port: int = 8080
    stats_port: int = 8404
    tls_pem: Path | None = None
    slots: int = 32
    check_interval_ms: int = 500
    connect_timeout_ms: int = 500
    server_timeout_s: int = 300
    tunnel_timeout_s: int = 3600
    access_log: bool = True
    maxconn: int = 4096

    @property
    def socket(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def state_file(self) -> Path:
        return self.workdir / "servers.state"

    @property
    def config_file(self) -> Path:
        return self.workdir / "haproxy.cfg"

    def map_file(self, name: str) -> Path:
        return self.workdir / f"{name}.map"


def render(settings: Settings, services: Iterable[str]) -> str:
    """haproxy.cfg for these services (``<service>.<version>`` backend bases)."""
    s = settings
    maps = {name: s.map_file(name) for name in MAPS}
    tls = f" ssl crt {s.tls_pem}" if s.tls_pem else ""
    lines = [
        "# written by aiges gateway; servers, weights and maps change through the runtime API",
        "global",
        "    master-worker",
        f"    stats socket {s.socket} mode 600 level admin expose-fd listeners",
        f"    server-state-file {s.state_file}",
        f"    maxconn {s.maxconn}",
        "    tune.h2.max-concurrent-streams 256",
    ]
    if s.access_log:
        lines.append("    log stdout format raw local0")
    lines += [
        "",
        "defaults",
        "    mode http",
        "    log global" if s.access_log else "    no log",
        f'    log-format "{ACCESS_LOG_FORMAT}"',
        f"    timeout connect {s.connect_timeout_ms}ms",
        f"    timeout client {s.server_timeout_s}s",
        f"    timeout server {s.server_timeout_s}s",
        f"    timeout tunnel {s.tunnel_timeout_s}s",
        "    timeout http-request 30s",
        "    timeout queue 5s",
        "    timeout client-fin 5s",
        "    retries 2",
        "    option redispatch 1",
        "    load-server-state-from-file global",
        f"    default-server init-addr none check inter {s.check_interval_ms}ms "
        f"fastinter {max(s.check_interval_ms // 2, 100)}ms downinter {s.check_interval_ms * 2}ms fall 2 rise 1 "
        "observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions",
        "",
        "frontend grpc",
        f"    bind {s.bind}:{s.grpc_port} proto h2" + (f"{tls} alpn h2" if tls else ""),
        "    http-request disable-l7-retry unless { req.hdr(aiges-idempotent) -m str 1 }",
        # HTTP/2 keeps the client's host only as :authority (with its port); a signed call's host
        # goes on to the hosts in x-forwarded-host, as signed: without port or brackets
        "    http-request set-header x-forwarded-host %[req.hdr(host),regsub(':[0-9]+$',),regsub('^\\[|\\]$',,g)] "
        "if { req.hdr(host) -m found }",
        f"    use_backend %[req.hdr(aiges-service),map_str({maps['services']})] "
        f"if {{ req.hdr(aiges-service),map_str({maps['services']}) -m found }}",
        f"    use_backend %[str(grpc),map_str({maps['default']})] "
        f"if {{ str(grpc),map_str({maps['default']}) -m found }}",
        "    default_backend no_service_grpc",
        "",
        "frontend http",
        f"    bind {s.bind}:{s.http_port}" + (f"{tls} alpn h2,http/1.1" if tls else ""),
        "    option forwardfor",
        "    http-request disable-l7-retry unless { req.hdr(aiges-idempotent) -m str 1 }",
        f"    use_backend %[path,map_str({maps['routes']})] if {{ path,map_str({maps['routes']}) -m found }}",
        f"    use_backend %[path,field(4,/),map_str({maps['models']})] "
        f"if {{ path_beg /v2/models/ }} {{ path,field(4,/),map_str({maps['models']}) -m found }}",
        f"    use_backend %[str(http),map_str({maps['default']})] "
        f"if {{ str(http),map_str({maps['default']}) -m found }}",
        "    default_backend no_service_http",
        "",
        "frontend stats",
        f"    bind {s.bind}:{s.stats_port}",
        "    no log",
        "    monitor-uri /healthz",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 5s",
        "",
        "backend no_service_grpc",
        # HTTP 503 is gRPC's UNAVAILABLE (as when every host of a service is down)
        "    http-request return status 503",
        "",
        "backend no_service_http",
        "    http-request return status 404 content-type application/json "
        'string "{\\"error\\": \\"no aiges service serves this path\\"}"',
    ]
    for base in sorted(services):
        lines += [
            "",
            f"backend {base}_grpc",
            "    balance leastconn",
            "    retry-on conn-failure empty-response",
            f"    use-server %[req.hdr(aiges-handle),bytes(1,12),map_str({maps['handles']})] "
            f"if {{ req.hdr(aiges-handle),bytes(1,12),map_str({maps['handles']}) -m found }}",
            # a fixed port: with ":0" HAProxy maps ports, a flag the server-state-file does not keep
            f"    server-template s 1-{s.slots} 0.0.0.0:1 proto h2 disabled",
            "",
            f"backend {base}_http",
            "    balance leastconn",
            "    retry-on conn-failure empty-response 503",
            f"    server-template s 1-{s.slots} 0.0.0.0:1 disabled",
        ]
    return "\n".join(lines) + "\n"


def render_map(entries: dict[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))
