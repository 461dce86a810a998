"""A host's config from the config centre: the version its group runs, made into a ``Config``,
and a copy of the last version fetched kept on disk for when etcd cannot be reached at start.

The copy is ``<cache>/<project>/<group>/<service>.json`` (the version as stored, and when it was
fetched), written atomically after every fetch, like the original's ``findercache``. Relative
paths in a version (the wrapper, [tls] and [auth] files) resolve from the base folder, the
working directory by default, as the original loader found its wrapper next to itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from aiges.config import Config, load_config_text
from aiges.platform.config_store import ConfigStore, ConfigStoreError, Current, Scope, Version, connect

log = structlog.get_logger("aiges.config")


class NothingPushed(ConfigStoreError):
    """etcd answered, and holds no config for this project, group and service."""


@dataclass(frozen=True)
class Overrides:
    """What the command line sets over every version (``--host``, ``--port``, ``--wrapper``)."""

    host: str | None = None
    port: int | None = None
    wrapper: str | None = None


@dataclass(frozen=True)
class Fetched:
    version: Version
    origin: str  # "etcd", or "cache" when etcd could not be reached
    fetched_at: float
    current: Current | None = None
    error: str = ""
    """Why etcd was not used (origin "cache")."""


def materialise(version: Version, scope: Scope, base: Path, overrides: Overrides) -> Config:
    """The ``Config`` a version holds, as this host runs it. Raises ConfigError."""
    return load_config_text(
        version.toml,
        f"{scope.label()} version {version.number}",
        base / "aiges.toml",
        scope.service,
        host=overrides.host,
        port=overrides.port,
        wrapper=overrides.wrapper,
    )


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_keys(config: Config, keys: str | None) -> Path | None:
    """Put a version's keys file where its ``[auth] keys`` names it (the server reads it again
    within a second); None when the version has none. Raises OSError."""
    if keys is None:
        return None
    path = config.relative_path(config.auth.keys)
    try:
        if path.read_text() == keys:
            return path
    except OSError:
        pass
    write_atomically(path, keys)
    return path


class ConfigCache:
    def __init__(self, directory: Path, scope: Scope) -> None:
        self.path = directory.expanduser() / scope.project / scope.group / f"{scope.service}.json"

    def save(self, fetched: Fetched) -> bool:
        """Keep ``fetched``; False (and a warning) when the folder cannot be written."""
        record = {"version": json.loads(fetched.version.encode()), "fetched_at": fetched.fetched_at}
        try:
            write_atomically(self.path, json.dumps(record, indent=1))
        except OSError as exc:
            log.warning("cannot cache the config version", path=str(self.path), error=str(exc))
            return False
        return True

    def load(self) -> Fetched | None:
        try:
            record = json.loads(self.path.read_text())
            version = Version.decode(json.dumps(record["version"]).encode())
            return Fetched(version, "cache", float(record["fetched_at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the cached config version cannot be read", path=str(self.path), error=str(exc))
            return None


async def fetch_current(endpoints: str, scope: Scope, timeout: float = 3.0) -> Fetched:
    """The group's current version from etcd. Raises NothingPushed, or ConfigStoreError when etcd
    cannot be reached."""
    async with connect(endpoints, timeout) as client:
        try:
            version, current, _ = await ConfigStore(client).current_version(scope)
        except ConfigStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - etcd failed mid-way: as unreachable
            raise ConfigStoreError(f"etcd failed: {type(exc).__name__}: {exc}") from None
    if version is None:
        raise NothingPushed(
            f"no config pushed for {scope.label()} in etcd ({endpoints}): "
            f"aiges config push -c aiges.toml --etcd {endpoints} --project {scope.project} "
            f"--group {scope.group} --service {scope.service}"
        )
    return Fetched(version, "etcd", time.time(), current)


async def start_version(endpoints: str, scope: Scope, cache: ConfigCache, timeout: float = 3.0) -> Fetched:
    """What a host starts from: the current version, cached; else (etcd unreachable) the cached
    copy, with the reason in ``error``. Raises ConfigStoreError when there is neither."""
    try:
        fetched = await fetch_current(endpoints, scope, timeout)
    except NothingPushed:
        raise
    except ConfigStoreError as exc:
        cached = cache.load()
        if cached is None:
            raise ConfigStoreError(f"{exc}; and no version of {scope.label()} is cached in {cache.path}") from None
        return dataclasses.replace(cached, error=str(exc))
    cache.save(fetched)
    return fetched
