"""The keys file (``[auth] keys``): the apps that may call, their secrets, what each may do.

    [[app]]
    app_id = "shop-frontend"
    api_key = "3f1c..."
    api_secret = "9a7e..."
    services = ["*"]            # serviceIds this app may call; "*" any
    admin = false               # may resize licences, load resources, reload, drain
    max_sessions = 0            # sessions open at once; 0: only the licences limit them
    rate = 0                    # calls per second (token bucket); 0: no limit
    burst = 0                   # calls at once above the rate; 0: max(1, rate)
    cert_names = []             # client certificate names (CN or DNS SAN) that mean this app

The file is checked for changes at most once a second, on the next request: a key removed from it
stops working within about a second, with no restart. A file that does not load is reported and
the apps read before it stay in force.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = structlog.get_logger("aiges.auth")

CHECK_S = 1.0
ANY = "*"


class KeysError(Exception):
    """The keys file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class App:
    app_id: str
    api_key: str
    api_secret: str = field(repr=False)
    services: frozenset[str] = frozenset({ANY})
    admin: bool = False
    max_sessions: int = 0
    rate: float = 0.0
    burst: float = 0.0
    cert_names: frozenset[str] = frozenset()

    def allows(self, service: str | None) -> bool:
        """May call ``service`` (None: not known yet, while the model loads: only "*" apps)."""
        return ANY in self.services or (service is not None and service in self.services)


@dataclass(frozen=True)
class Keys:
    apps: tuple[App, ...] = ()
    by_key: dict[str, App] = field(default_factory=dict)
    by_cert_name: dict[str, App] = field(default_factory=dict)


FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "app_id": (str, None),
    "api_key": (str, None),
    "api_secret": (str, None),
    "services": (list, [ANY]),
    "admin": (bool, False),
    "max_sessions": (int, 0),
    "rate": ((int, float), 0.0),
    "burst": ((int, float), 0.0),
    "cert_names": (list, []),
}


def parse_keys(text: str, where: str) -> Keys:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeysError(f"{where}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"app"})
    if unknown:
        raise KeysError(f"{where}: unknown top-level key {unknown[0]!r}; apps are [[app]] tables")
    entries = data.get("app", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KeysError(f"{where}: app must be an array of tables ([[app]])")
    apps = [_app(entry, f"{where}: [[app]] #{index + 1}") for index, entry in enumerate(entries)]
    keys = Keys(tuple(apps))
    seen_ids: set[str] = set()
    for app in apps:
        if app.app_id in seen_ids:
            raise KeysError(f"{where}: app_id {app.app_id!r} is given twice")
        seen_ids.add(app.app_id)
        if app.api_key in keys.by_key:
            raise KeysError(
                f"{where}: app {app.app_id!r}: its api_key is also app {keys.by_key[app.api_key].app_id!r}'s"
            )
        keys.by_key[app.api_key] = app
        for name in app.cert_names:
            if name in keys.by_cert_name:
                raise KeysError(f"{where}: cert name {name!r} is given to two apps")
            keys.by_cert_name[name] = app
    return keys


def _app(entry: dict[str, Any], where: str) -> App:
    for name in entry:
        if name not in FIELDS:
            raise KeysError(f"{where}: unknown key {name!r} (known: {', '.join(FIELDS)})")
    values: dict[str, Any] = {}
    for name, (kind, default) in FIELDS.items():
        value = entry.get(name, default)
        if value is None:
            raise KeysError(f"{where}: {name} is missing")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise KeysError(f"{where}: {name} has the wrong type ({type(value).__name__})")
        if isinstance(value, list) and not all(isinstance(v, str) and v for v in value):
            raise KeysError(f"{where}: {name} must be a list of names")
        if isinstance(value, str) and not value:
            raise KeysError(f"{where}: {name} is empty")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise KeysError(f"{where}: {name} must be >= 0")
        values[name] = value
    return App(
        app_id=values["app_id"],
        api_key=values["api_key"],
        api_secret=values["api_secret"],
        services=frozenset(values["services"]),
        admin=values["admin"],
        max_sessions=values["max_sessions"],
        rate=float(values["rate"]),
        burst=float(values["burst"]),
        cert_names=frozenset(values["cert_names"]),
    )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class KeysFile:
    """The keys file, read again when it changes (looked at most every ``CHECK_S`` seconds)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.keys = Keys()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.changed: Callable[[Keys], None] = lambda keys: None

    def load(self) -> Keys:
        """Read the file now; raises KeysError (at start-up, the server does not start)."""
        stamp = _stamp(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeysError(f"{self.path}: cannot read the keys file: {exc}") from None
        self.keys = parse_keys(text, str(self.path))
        self._stamp = stamp
        self._checked = self.clock()
        self.changed(self.keys)
        return self.keys

    def current(self) -> Keys:
        now = self.clock()
        if now - self._checked >= CHECK_S:
            self._checked = now
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._reload(stamp)
        return self.keys

    def _reload(self, stamp: tuple[int, int, int] | None) -> None:
        try:
            self.load()
        except KeysError as exc:
            self._stamp = stamp  # reported once per change, not on every check
            log.error("keys file not reloaded; the apps read before stay in force", error=str(exc))
            return
        log.info("keys file reloaded", path=str(self.path), apps=len(self.keys.apps))
