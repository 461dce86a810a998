"""What a new config version changes on a running host, and how each change can be made.

    live      [fc] max (the licences, resized as AILBType does), [log] level (the server's own
              logs at once; workers take it at their next start or reload, a level alone does
              not restart a model), the keys file (the apps, their keys and per-app limits: the
              server reads it again within a second)
    reload    what the workers are started with: [aiges] wrapper, realTimeRlt, asyncMode,
              headerPass, [batch] and the whole [wrapper] section; a new generation of workers
              takes them with no call dropped (``aiges.server.reloader``)
    restart   everything else (ports, TLS, registry, worker count, session expiry, ...): reported
              as needing a restart and left as it is

``plan`` compares two loaded configs key by key, so a version that only reorders or reformats
its file changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiges.config import Config

LIVE_KEYS = frozenset({("fc", "max"), ("log", "level")})
RELOAD_KEYS = frozenset(
    {
        ("aiges", "wrapper"),
        ("aiges", "realTimeRlt"),
        ("aiges", "asyncMode"),
        ("aiges", "headerPass"),
        ("batch", "max_size"),
        ("batch", "max_delay_ms"),
    }
)
WRAPPER = "wrapper"


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"[{self.section}] {self.key}: {self.old!r} -> {self.new!r}"

    @property
    def name(self) -> str:
        return f"[{self.section}] {self.key}"


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    licences: int | None = None
    log_level: str | None = None
    reload: bool = False
    keys: bool = False
    restart: tuple[Change, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.changes and not self.keys


def flatten(config: Config) -> dict[tuple[str, str], Any]:
    """Every key of ``config`` as (section, key) -> value (the wrapper's keys each their own)."""
    flat: dict[tuple[str, str], Any] = {}
    for section, values in config.as_dict().items():
        for key, value in values.items():
            flat[(section, key)] = value
    return flat


def differences(old: Config, new: Config) -> list[Change]:
    before, after = flatten(old), flatten(new)
    changes = []
    for section, key in sorted(before.keys() | after.keys()):
        if before.get((section, key)) != after.get((section, key)):
            changes.append(Change(section, key, before.get((section, key)), after.get((section, key))))
    return changes


def applies_without_restart(change: Change) -> bool:
    where = (change.section, change.key)
    return where in LIVE_KEYS or where in RELOAD_KEYS or change.section == WRAPPER


def needs_reload(change: Change) -> bool:
    return (change.section, change.key) in RELOAD_KEYS or change.section == WRAPPER


def plan(old: Config, new: Config, old_keys: str | None = None, new_keys: str | None = None) -> Plan:
    """How to go from ``old`` (with its keys file's text) to ``new``."""
    changes = differences(old, new)
    by_key = {(c.section, c.key): c for c in changes}
    licences = by_key.get(("fc", "max"))
    level = by_key.get(("log", "level"))
    return Plan(
        changes=tuple(changes),
        licences=int(licences.new) if licences is not None else None,
        log_level=str(level.new) if level is not None else None,
        reload=any(needs_reload(c) for c in changes),
        keys=old_keys != new_keys,
        restart=tuple(c for c in changes if not applies_without_restart(c)),
    )


def restart_needed(started: Config, running: Config) -> list[str]:
    """The keys in which the version a host runs differs from what its process started with and
    cannot change until it restarts."""
    return [str(c) for c in differences(started, running) if not applies_without_restart(c)]
