"""``aiges.toml`` -> frozen dataclasses.

Every key has its default, type and one line of doc here, in one place. Section names follow the
original loader (``[<service>]``, ``[aiges]``, ``[wrapper]``, ``[fc]``, ``[log]``) so its config
files load unchanged; keys and sections it had that aiges does not use are accepted and listed as
ignored. An unknown section, a value of the wrong type or TOML that does not parse is a
``ConfigError`` naming the file, section and key; an unknown key in a known section is a warning.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_SERVICE = "svcName"

_SectionT = TypeVar("_SectionT", bound="DataclassInstance")


class ConfigError(Exception):
    """A config problem, already worded as the one line the user sees."""


def key(
    default: Any, doc: str, *, minimum: int | None = None, choices: tuple[str, ...] = (), listed: bool = False
) -> Any:
    """A config key; ``listed``: a string that may also be written as a TOML list (joined with ",")."""
    return field(default=default, metadata={"doc": doc, "minimum": minimum, "choices": choices, "listed": listed})


_key = key


@dataclass(frozen=True)
class ServiceSection:
    """``[<service>]``: the gRPC listener (section name chosen with ``-s``, default ``svcName``)."""

    host: str = key("0.0.0.0", "address to listen on")
    port: int = key(5090, "port to listen on (0 picks a free one)", minimum=0)
    maxreceive: int = key(4, "largest request message, MiB", minimum=1)
    maxsend: int = key(4, "largest reply message, MiB", minimum=1)
    reuseport: bool = key(
        False,
        "share the port (and the HTTP front's) with other aiges processes through SO_REUSEPORT, "
        "to run one front per core or GPU behind one port; the kernel spreads connections, so a "
        "session keeps to its connection (see the README's performance section)",
    )
    state_dir: str = key(
        "",
        "with reuseport: the folder of the host's shared state (one file per port: replay cache, "
        "licences, per-app limits, the live fronts) and of each front's local socket; "
        "empty: /dev/shm/aiges-<uid>",
    )


@dataclass(frozen=True)
class AigesSection:
    """``[aiges]``: the loader."""

    wrapper: str = key("wrapper.py", "wrapper.py, a folder holding one, or a .so; relative to this file")
    sub: str = key("ase", "service type label")
    headerPass: str = key("sid", "';'-separated header keys copied into the wrapper's params ('sid' always)")
    realTimeRlt: bool = key(True, "streaming: read results after every write, not only after the last")
    asyncMode: bool = key(
        False,
        "C: one-shot calls through wrapperExecAsync; class style: session results only "
        "through the callback (wrapperRead is not called)",
    )
    drain_timeout_ms: int = key(10000, "on SIGTERM, how long in-flight calls and sessions may finish", minimum=0)
    sched_batch: bool = key(True, "run server and workers as SCHED_BATCH, so calls batch up on a busy CPU")


@dataclass(frozen=True)
class WorkerSection:
    """``[worker]``: the pool of worker processes that run the wrapper."""

    count: int = key(0, "worker processes; 0 = one per GPU found, else 1", minimum=0)
    gpus: str = key("auto", "'auto' (NVML), '' for none, or a list like '0,1' assigned round-robin")
    exec_timeout_ms: int = key(30000, "a call running longer gets 10102 and its worker is replaced", minimum=1)
    min_ready: int = key(0, "health is SERVING while at least this many workers are up; 0 = all", minimum=0)
    ready_timeout_ms: int = key(
        600000,
        "a worker whose wrapperInit takes longer is killed and started again "
        "(at start-up: the server exits); 0 = wait for ever",
        minimum=0,
    )
    start_failures: int = key(
        3,
        "a worker that fails this many starts in a row (init error, crash, timeout) "
        "makes liveness (aiges.liveness) NOT_SERVING, so the orchestrator restarts "
        "the process; it is still retried with back-off",
        minimum=1,
    )
    threads: int = key(0, "threads per worker for OpenMP/BLAS (OMP_NUM_THREADS...); 0 = cores / workers", minimum=0)
    shm_mb: int = key(64, "shared-memory ring per direction per worker for payloads >= 64 KiB; 0 = off", minimum=0)


@dataclass(frozen=True)
class FcSection:
    """``[fc]``: flow control - licences and session expiry."""

    max: int = key(100, "licences: one-shot calls and open sessions served at once", minimum=1)
    ttl: int = key(15000, "a session idle this many ms is closed", minimum=1)
    roll: int = key(1000, "how often idle sessions are looked for, ms", minimum=1)
    deadline_ms: int = key(
        0,
        "a call's deadline when its caller sets none (gRPC deadline, X-Request-Timeout, waitTime, OIP "
        "timeout), ms: a call that could not be done in time is refused at once (10110), one whose "
        "deadline passes while it waits never runs; 0 = none",
        minimum=0,
    )
    session_output_kb: int = key(
        4096,
        "unread output a session may hold in the server, KiB: past it the worker "
        "stops reading the wrapper's output for that session; past 4x (a wrapper "
        "pushing through callbacks cannot be paused) the session ends with 10111",
        minimum=1,
    )


@dataclass(frozen=True)
class LogSection:
    """``[log]``: structured logs on stdout."""

    level: str = key("info", "debug, info, warning or error", choices=("debug", "info", "warning", "warn", "error"))
    format: str = key("auto", "json, console, or auto (console on a terminal)", choices=("auto", "json", "console"))


@dataclass(frozen=True)
class BatchSection:
    """``[batch]``: dynamic batching of one-shot calls for wrappers that define wrapperBatchExec."""

    max_size: int = key(1, "most calls per wrapperBatchExec; 1 turns batching off", minimum=1)
    max_delay_ms: int = key(0, "how long a worker waits for a batch to fill before running it", minimum=0)


@dataclass(frozen=True)
class MetricsSection:
    """``[metrics]``: Prometheus metrics over HTTP at ``/metrics``."""

    port: int = key(9090, "port of the /metrics endpoint; 0 turns it off", minimum=0)
    host: str = key("", "address to listen on; empty: the service's host")


@dataclass(frozen=True)
class RegistrySection:
    """``[registry]``: where the server registers itself and its load, for clients and balancers."""

    backend: str = key("none", "none, or etcd", choices=("none", "etcd"))
    endpoints: str = key("127.0.0.1:2379", "etcd endpoints, comma separated; tried in order")
    ttl: int = key(10, "lease seconds: the key disappears this long after the server does", minimum=2)
    prefix: str = key("/aiges/services", "key prefix: <prefix>/<service>/<version>/providers/<host:port>")
    service: str = key("", "service name in the key; empty: the wrapper's serviceId")
    version: str = key("", "version in the key; empty: the wrapper's version")
    address: str = key("", "host:port to advertise; empty: this host's address and the service port")


@dataclass(frozen=True)
class HttpSection:
    """``[http]``: the HTTP front: the ASE JSON API (POST, and WebSocket sessions) on the schema's
    route, the Open Inference Protocol REST API under ``/v2``, ``/openapi.json`` and ``/docs``."""

    listen: str = key(
        "",
        "HOST:PORT to serve HTTP on; empty: no HTTP front, unless [wrapper] http_listen "
        "(the original loader's key) names one",
    )
    cors: str = key(
        "",
        "origins allowed to call from a browser (CORS), comma separated or a list, or '*' for any; "
        "empty: no CORS headers at all",
        listed=True,
    )


@dataclass(frozen=True)
class TlsSection:
    """``[tls]``: TLS on the gRPC port (every service on it) and the HTTP port; files are PEM,
    relative to this file, and are read again when they change (new connections get the new ones)."""

    # _key: a field named ``key`` hides the function of that name inside the class body
    cert: str = _key("", "the server's certificate chain; empty: plain text")
    key: str = _key("", "the certificate's private key")
    client_ca: str = _key(
        "", "CA certificates; set: every client must present a certificate signed by one of them (mTLS)"
    )


@dataclass(frozen=True)
class AuthSection:
    """``[auth]``: who may call. ``hmac``: every request is signed as the AI platform signs them
    (host, date, authorization), or comes with a client certificate an app in the keys file names;
    health, liveness and the OpenAPI description stay open for probes."""

    mode: str = key("none", "none (anyone who reaches the port), or hmac", choices=("none", "hmac"))
    keys: str = key(
        "keys.toml",
        "the apps: [[app]] app_id, api_key, api_secret, services, admin, max_sessions, rate, "
        "cert_names; relative to this file; read again when it changes",
    )
    skew_s: int = key(300, "a signed date may differ from the server's clock by this many seconds", minimum=1)
    require_nonce: bool = key(
        False,
        "refuse signatures that do not sign an x-aiges-nonce (10139): only those are replay-protected; "
        "the platform's own clients sign none",
    )
    hosts: str = key(
        "",
        "the host names a signature may name (comma separated or a list; '*.example.com' for any "
        "name under it); empty: any host",
        listed=True,
    )
    replay_mb: int = key(
        32,
        "memory of the replay cache of nonce'd signatures, MiB (24 bytes each, kept until date + skew_s); "
        "when it is full, nonce'd calls are refused (10142), never let through twice",
        minimum=1,
    )


@dataclass(frozen=True)
class ResourcesSection:
    """``[resources]``: personalised resources (``AILoad`` / ``AIUnLoad``): the server keeps every
    loaded one, loads it in each worker (and again in a worker that restarts or a reload starts),
    and bounds what it keeps. (The original's ``[resource]`` section is another thing, ignored.)"""

    max_count: int = key(100, "most resources loaded at once; AILoad of one more is 10121", minimum=0)
    max_mb: int = key(256, "most bytes, MiB, of all loaded resources together (each worker holds them too)", minimum=0)


@dataclass(frozen=True)
class ServiceEntry:
    """``[[service]]``: one of the daemon's services (the list form; without it the daemon serves
    ``[aiges] wrapper`` alone, as it always has). Its ``[service.worker]``, ``[service.fc]``,
    ``[service.batch]`` and ``[service.resources]`` tables take the keys of the top-level sections
    of those names, whose values are their defaults; ``[service.config]`` is its wrapperInit
    config, over the top-level ``[wrapper]`` (TOML cannot make ``wrapper`` both the path and a
    table)."""

    wrapper: str = key("", "wrapper.py, a folder holding one, or a .so; relative to this file (required)")
    name: str = key(
        "",
        "the service's name: routing (xsf serviceId, OIP model name), health, registry, metrics; "
        "empty: the wrapper's serviceId",
    )
    version: str = key("", "the version in the registry key and the OIP model; empty: the wrapper's version")


SERVICE_TABLES: dict[str, type] = {}
"""The sections a ``[[service]]`` entry may hold tables of (filled in below ``SECTIONS``)."""


@dataclass(frozen=True)
class ServiceSpec:
    """One service as the server runs it: a ``[[service]]`` entry over the top-level sections,
    or, in the single form, the top-level sections themselves."""

    name: str
    wrapper: str
    version: str
    worker: WorkerSection
    fc: FcSection
    batch: BatchSection
    resources: ResourcesSection
    wrapper_config: dict[str, str]
    base: Path | None = None
    """The folder a relative ``wrapper`` is resolved against (the config file's)."""

    @property
    def wrapper_path(self) -> Path:
        path = Path(self.wrapper).expanduser()
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        return path.resolve()

    @property
    def label(self) -> str:
        """How logs and errors name it before its wrapper has told its serviceId."""
        return self.name or str(self.wrapper)

    def as_dict(self) -> dict[str, Any]:
        """The entry, in the file's shape."""
        return {
            "name": self.name,
            "wrapper": self.wrapper,
            "version": self.version,
            "worker": dataclasses.asdict(self.worker),
            "fc": dataclasses.asdict(self.fc),
            "batch": dataclasses.asdict(self.batch),
            "resources": dataclasses.asdict(self.resources),
            "config": dict(self.wrapper_config),
        }


# Keys and sections the original loader read that have no effect here; accepted so its config
# files load unchanged, and reported as ignored.
IGNORED_KEYS: dict[str, frozenset[str]] = {
    "service": frozenset(
        {
            "netcard",
            "finder",
            "grpctimeout",
            "conn-rbuf",
            "conn-wbuf",
            "rate",
            "burst",
            "vcpu",
            "vcpu-g",
            "vcpu-s",
            "vcpu-v",
            "vcpu-i",
            "http_listen",
        }
    ),
    "aiges": frozenset(
        {
            "sessDelGt",
            "httpRetry",
            "wrapperTrace",
            "gray",
            "wrapperDelayDetectPeriod",
            "storageData",
            "asyncRelease",
            "usrCfg",
            "pythonPluginCmd",
            "sessMode",
            "gesMock",
            "numaNode",
        }
    ),
    "fc": frozenset(
        {
            "able",
            "router",
            "best",
            "report",
            "wave",
            "strategy",
            "tasksize",
            "taskchsize",
            "filterwin",
        }
    ),
    "log": frozenset({"file", "size", "count", "die", "async", "cache", "batch", "caller", "wash"}),
    "batch": frozenset(),
    "registry": frozenset(),
    "worker": frozenset(),
    "http": frozenset(),
    "tls": frozenset(),
    "auth": frozenset(),
    "metrics": frozenset({"able", "idc", "sub", "cs", "timePerSlice", "winSize"}),
    "resources": frozenset(),
}
IGNORED_SECTIONS = frozenset(
    {
        "trace",
        "sonar",
        "lbv2",
        "lb",
        "bvt",
        "ws",
        "pprof",
        "downAsync",
        "dataProcess",
        "resource",
        "elog",
    }
)


@dataclass(frozen=True)
class Config:
    path: Path | None
    service_name: str
    service: ServiceSection
    aiges: AigesSection
    worker: WorkerSection
    fc: FcSection
    log: LogSection
    batch: BatchSection
    metrics: MetricsSection
    registry: RegistrySection
    http: HttpSection
    wrapper: dict[str, str]
    resources: ResourcesSection = ResourcesSection()
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    tls: TlsSection = field(default_factory=TlsSection)
    auth: AuthSection = field(default_factory=AuthSection)
    services: tuple[ServiceSpec, ...] = ()
    """The ``[[service]]`` list; empty in the single form (``[aiges] wrapper``)."""

    @property
    def listed(self) -> bool:
        """The list form: the daemon serves the ``[[service]]`` entries."""
        return bool(self.services)

    def specs(self) -> tuple[ServiceSpec, ...]:
        """The services to serve: the ``[[service]]`` entries, or the single form's one wrapper
        (named by ``[registry] service``, else by its serviceId)."""
        if self.services:
            return self.services
        single = ServiceSpec(
            name=self.registry.service,
            wrapper=self.aiges.wrapper,
            version=self.registry.version,
            worker=self.worker,
            fc=self.fc,
            batch=self.batch,
            resources=self.resources,
            wrapper_config=dict(self.wrapper),
            base=self.path.parent if self.path is not None else None,
        )
        return (single,)

    @property
    def wrapper_path(self) -> Path:
        """The wrapper path, resolved against the config file's folder."""
        path = Path(self.aiges.wrapper).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path.resolve()

    def relative_path(self, name: str) -> Path:
        """A file named in the config ([tls], [auth] keys), resolved against the config file's folder."""
        path = Path(name).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path.resolve()

    @property
    def http_listen(self) -> str:
        """Where the HTTP front listens: ``[http] listen``, else the original ``[wrapper] http_listen``."""
        return self.http.listen or self.wrapper.get("http_listen", "")

    @property
    def header_pass(self) -> tuple[str, ...]:
        keys = [k.strip() for k in self.aiges.headerPass.split(";") if k.strip()]
        if "sid" not in keys:
            keys.append("sid")
        return tuple(keys)

    def as_dict(self) -> dict[str, Any]:
        """The effective configuration, in the file's shape."""
        return {
            self.service_name: dataclasses.asdict(self.service),
            "aiges": dataclasses.asdict(self.aiges),
            "worker": dataclasses.asdict(self.worker),
            "fc": dataclasses.asdict(self.fc),
            "log": dataclasses.asdict(self.log),
            "batch": dataclasses.asdict(self.batch),
            "metrics": dataclasses.asdict(self.metrics),
            "registry": dataclasses.asdict(self.registry),
            "http": dataclasses.asdict(self.http),
            "resources": dataclasses.asdict(self.resources),
            "tls": dataclasses.asdict(self.tls),
            "auth": dataclasses.asdict(self.auth),
            "wrapper": dict(self.wrapper),
        } | ({"service": [spec.as_dict() for spec in self.services]} if self.services else {})


SECTIONS: dict[str, type] = {
    "aiges": AigesSection,
    "worker": WorkerSection,
    "fc": FcSection,
    "log": LogSection,
    "batch": BatchSection,
    "metrics": MetricsSection,
    "registry": RegistrySection,
    "http": HttpSection,
    "resources": ResourcesSection,
    "tls": TlsSection,
    "auth": AuthSection,
}
SERVICE_TABLES.update(worker=WorkerSection, fc=FcSection, batch=BatchSection, resources=ResourcesSection)
SERVICE_LIST = "service"


def load_config(
    path: str | os.PathLike[str] | None,
    service: str = DEFAULT_SERVICE,
    *,
    host: str | None = None,
    port: int | None = None,
    wrapper: str | None = None,
) -> Config:
    """Read ``path`` (or use every default when it is None) and apply command-line overrides."""
    file = Path(path) if path is not None else None
    data = _read_toml(file) if file is not None else {}
    where = str(file) if file is not None else "<defaults>"
    resolved = file.resolve() if file is not None else None
    return _build_config(data, where, resolved, service, host=host, port=port, wrapper=wrapper)


def load_config_text(
    text: str,
    where: str,
    path: Path,
    service: str = DEFAULT_SERVICE,
    *,
    host: str | None = None,
    port: int | None = None,
    wrapper: str | None = None,
) -> Config:
    """A config from TOML text (a version from the config centre, ``aiges.platform``): ``where``
    names it in errors; ``path`` is where it counts as read from (relative paths resolve from its
    folder)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return _build_config(data, where, path, service, host=host, port=port, wrapper=wrapper)


def _build_config(
    data: dict[str, Any],
    where: str,
    path: Path | None,
    service: str,
    *,
    host: str | None,
    port: int | None,
    wrapper: str | None,
) -> Config:
    warnings: list[str] = []
    ignored: list[str] = []

    for name, value in data.items():
        if name == SERVICE_LIST and name != service:
            if not isinstance(value, list):
                raise ConfigError(f"{where}: [service]: the services are a list: write each as [[service]]")
        elif name == service or name in SECTIONS or name == "wrapper":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{name}]: expected a table, got {_describe(value)}")
        elif name in IGNORED_SECTIONS:
            ignored.append(f"[{name}]")
        else:
            hint = f"; the service section is [{service}] (chosen with -s)" if service != name else ""
            raise ConfigError(f"{where}: [{name}]: unknown section{hint}")

    sections: dict[str, Any] = {  # the sections' types differ; each is named where it is read
        "service": _section(where, service, ServiceSection, data.get(service, {}), "service", warnings, ignored),
    }
    for name, cls in SECTIONS.items():
        sections[name] = _section(where, name, cls, data.get(name, {}), name, warnings, ignored)

    service_section: ServiceSection = sections["service"]
    if host is not None:
        service_section = dataclasses.replace(service_section, host=host)
    if port is not None:
        service_section = dataclasses.replace(service_section, port=port)
    aiges_section: AigesSection = sections["aiges"]
    if wrapper is not None:
        aiges_section = dataclasses.replace(aiges_section, wrapper=str(Path(wrapper).resolve()))

    _check_gpus(where, sections["worker"].gpus)
    _check_tls(where, sections["tls"])
    entries = data.get(SERVICE_LIST, []) if service != SERVICE_LIST else []
    services = _services(where, path, entries, sections, data, warnings, ignored)
    if services and ("wrapper" in data.get("aiges", {}) or wrapper is not None):
        raise ConfigError(
            f"{where}: [aiges] wrapper (or --wrapper) names the single form's one wrapper; "
            "with [[service]] each service names its own"
        )
    if services and sections["registry"].service:
        raise ConfigError(f"{where}: [registry] service names one service; with [[service]] give each its name")
    return Config(
        path=path,
        service_name=service,
        service=service_section,
        aiges=aiges_section,
        worker=sections["worker"],
        fc=sections["fc"],
        log=sections["log"],
        batch=sections["batch"],
        metrics=sections["metrics"],
        registry=sections["registry"],
        http=sections["http"],
        resources=sections["resources"],
        wrapper=_flatten_wrapper(data.get("wrapper", {})),
        warnings=tuple(warnings),
        ignored=tuple(ignored),
        tls=sections["tls"],
        auth=sections["auth"],
        services=services,
    )


def _services(
    where: str,
    file: Path | None,
    entries: list[Any],
    sections: dict[str, Any],
    data: dict[str, Any],
    warnings: list[str],
    ignored: list[str],
) -> tuple[ServiceSpec, ...]:
    """The ``[[service]]`` entries, each over the top-level sections (its defaults)."""
    base = file.resolve().parent if file is not None else None
    top_config = _flatten_wrapper(data.get("wrapper", {}))
    specs: list[ServiceSpec] = []
    names: set[str] = set()
    entry_keys = {f.name: f for f in dataclasses.fields(ServiceEntry)}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: [[service]] #{index + 1}: expected a table, got {_describe(entry)}")
        label = str(entry.get("name") or f"#{index + 1}")
        values = {}
        for key_name, value in entry.items():
            if key_name in entry_keys:
                values[key_name] = _coerce(where, f"service.{label}", key_name, entry_keys[key_name], value)
            elif key_name not in SERVICE_TABLES and key_name != "config":
                if isinstance(value, dict):
                    known = ", ".join([*SERVICE_TABLES, "config"])
                    raise ConfigError(f"{where}: [service.{key_name}] ({label}): unknown table; a service has {known}")
                warnings.append(f"{where}: [[service]] {label}: {key_name}: unknown key, ignored")
        spec_entry = ServiceEntry(**values)
        if not spec_entry.wrapper:
            raise ConfigError(f"{where}: [[service]] {label}: wrapper is required (its folder, wrapper.py or .so)")
        if spec_entry.name and spec_entry.name in names:
            raise ConfigError(f"{where}: [[service]]: two services are named {spec_entry.name!r}")
        names.add(spec_entry.name)
        tables = {}
        for table, cls in SERVICE_TABLES.items():
            own = entry.get(table, {})
            if not isinstance(own, dict):
                raise ConfigError(f"{where}: [service.{table}] ({label}): expected a table, got {_describe(own)}")
            fields = _values(where, f"service.{label}.{table}", cls, own, table, warnings, ignored)
            tables[table] = dataclasses.replace(sections[table], **fields)
        _check_gpus(where, tables["worker"].gpus)
        own_config = entry.get("config", {})
        if not isinstance(own_config, dict):
            raise ConfigError(f"{where}: [service.config] ({label}): expected a table, got {_describe(own_config)}")
        specs.append(
            ServiceSpec(
                name=spec_entry.name,
                wrapper=spec_entry.wrapper,
                version=spec_entry.version,
                wrapper_config={**top_config, **_flatten_wrapper(own_config)},
                base=base,
                **tables,
            )
        )
    return tuple(specs)


def service_spec(table: dict[str, Any], defaults: Config, where: str = "the service") -> ServiceSpec:
    """One service from a table in the ``[[service]]`` shape (``RepositoryModelLoad``'s config),
    over ``defaults``' top-level sections; paths are resolved against the config file's folder."""
    sections = {section: getattr(defaults, section) for section in SERVICE_TABLES}
    return _services(where, defaults.path, [table], sections, {"wrapper": defaults.wrapper}, [], [])[0]


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "[service.wrapper]" in raw.decode("utf-8", errors="replace"):
            hint = "; a service's wrapperInit config is its [service.config] table (wrapper is its path)"
        raise ConfigError(f"{file}: invalid TOML: {exc}{hint}") from None


def _section(
    where: str,
    name: str,
    cls: type[_SectionT],
    table: dict[str, Any],
    kind: str,
    warnings: list[str],
    ignored: list[str],
) -> _SectionT:
    return cls(**_values(where, name, cls, table, kind, warnings, ignored))


def _values(
    where: str,
    name: str,
    cls: type[Any],
    table: dict[str, Any],
    kind: str,
    warnings: list[str],
    ignored: list[str],
) -> dict[str, Any]:
    """The keys of ``table`` that ``cls`` knows, checked and coerced."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key_name, value in table.items():
        spec = fields.get(key_name)
        if spec is None:
            if key_name in IGNORED_KEYS.get(kind, ()):
                ignored.append(f"[{name}] {key_name}")
            else:
                warnings.append(f"{where}: [{name}] {key_name}: unknown key, ignored")
            continue
        values[key_name] = _coerce(where, name, key_name, spec, value)
    return values


def _coerce(where: str, section: str, key_name: str, spec: dataclasses.Field[Any], value: Any) -> Any:
    """Check ``value`` against the field's type. Numbers and booleans written as strings are
    accepted, as the original loader's config reader did."""
    expected = spec.type
    prefix = f"{where}: [{section}] {key_name}"
    result: bool | int | str
    if expected == "bool":
        if isinstance(value, bool):
            result = value
        elif isinstance(value, int) and value in (0, 1):
            result = bool(value)
        elif isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            result = value.strip().lower() in ("true", "1")
        else:
            raise ConfigError(f"{prefix}: expected true or false, got {_describe(value)}")
    elif expected == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{prefix}: expected an integer, got {_describe(value)}")
        if isinstance(value, int):
            result = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            result = int(value)
        else:
            raise ConfigError(f"{prefix}: expected an integer, got {_describe(value)}")
        minimum = spec.metadata.get("minimum")
        if minimum is not None and result < minimum:
            raise ConfigError(f"{prefix}: must be >= {minimum}, got {result}")
        if key_name == "port" and result > 65535:
            raise ConfigError(f"{prefix}: must be a port number (0-65535), got {result}")
    else:
        if isinstance(value, list) and spec.metadata.get("listed") and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if isinstance(value, (dict, list, bool)) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{prefix}: expected a string, got {_describe(value)}")
        result = str(value)
        choices = spec.metadata.get("choices")
        if choices and result not in choices:
            raise ConfigError(f"{prefix}: must be one of {', '.join(choices)}; got {result!r}")
    return result


def _check_gpus(where: str, gpus: str) -> None:
    text = gpus.strip()
    if text in ("", "auto"):
        return
    for part in text.split(","):
        if not part.strip().isdigit():
            raise ConfigError(
                f"{where}: [worker] gpus: expected 'auto', '' or a list of GPU indices like '0,1'; got {gpus!r}"
            )


def _check_tls(where: str, tls: TlsSection) -> None:
    if bool(tls.cert) != bool(tls.key):
        raise ConfigError(f"{where}: [tls] cert and key go together: give both, or neither for plain text")
    if tls.client_ca and not tls.cert:
        raise ConfigError(f"{where}: [tls] client_ca needs cert and key: mTLS is TLS with client certificates")


def parse_gpus(gpus: str) -> list[int] | None:
    """``'0,1'`` -> ``[0, 1]``; ``''`` -> ``[]``; ``'auto'`` -> None (discover)."""
    text = gpus.strip()
    if text == "auto":
        return None
    return [int(p) for p in text.split(",") if p.strip()]


def _flatten_wrapper(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``[wrapper]`` goes to wrapperInit as strings; nested tables become dotted keys
    (``log.level = "debug"`` in TOML is a nested table, the original meant the key ``log.level``)."""
    flat: dict[str, str] = {}
    for name, value in table.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten_wrapper(value, full + "."))
        elif isinstance(value, bool):
            flat[full] = "true" if value else "false"
        elif isinstance(value, list):
            flat[full] = ",".join(str(v) for v in value)
        else:
            flat[full] = str(value)
    return flat


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def key_docs() -> dict[str, list[tuple[str, Any, str]]]:
    """Every known key with its default and doc, by section, for ``aiges check`` and the docs."""
    docs = {}
    for section, cls in {"<service>": ServiceSection, **SECTIONS, "[service]": ServiceEntry}.items():
        docs[section] = [(f.name, f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)]
    return docs
