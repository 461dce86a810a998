"""Versioned configs in etcd, per project, group and service (the AI platform's Polaris, on the
etcd the registry already uses: its transactions number the versions, its watch tells the hosts).

    <root>/<project>/<group>/<service>/versions/<000001>   a version: the aiges.toml text, the
                                                            keys file's text (optional), who pushed
                                                            it, when, why, from which file
    <root>/<project>/<group>/<service>/current             the version the group's hosts run: its
                                                            number, who set it, when, and how
                                                            (push or rollback)

A push writes the next version and moves ``current`` to it in one transaction, which fails (and
is tried again with the next number) if another push took that number first; a rollback moves
``current`` back to an earlier version, again only if nobody moved it meanwhile. Versions are
never rewritten or deleted, so each is what was pushed. A group is the unit of a gray release:
push to one group, compare, then push the same text to the others.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import aetcd

from aiges.registry.etcd import parse_endpoints

ROOT = "/aiges/config"
DIGITS = 6
PUSH_ATTEMPTS = 5


class ConfigStoreError(Exception):
    """The store cannot do what was asked; the message is the line the user sees."""


def pushed_by() -> str:
    """``user@host``, for a version's record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Scope:
    """Whose config: the original's ``-p`` project, ``-g`` group and ``-s`` service."""

    project: str
    group: str
    service: str
    root: str = ROOT

    def __post_init__(self) -> None:
        for name in ("project", "group", "service"):
            value = getattr(self, name)
            if not value or "/" in value:
                raise ConfigStoreError(f"the {name} must be a non-empty name without '/', got {value!r}")

    @property
    def base(self) -> str:
        return f"{self.root.rstrip('/')}/{self.project}/{self.group}/{self.service}/"

    @property
    def current_key(self) -> bytes:
        return (self.base + "current").encode()

    @property
    def versions_prefix(self) -> bytes:
        return (self.base + "versions/").encode()

    def version_key(self, number: int) -> bytes:
        return self.versions_prefix + f"{number:0{DIGITS}d}".encode()

    def in_group(self, group: str) -> Scope:
        return Scope(self.project, group, self.service, self.root)

    def label(self) -> str:
        return f"{self.project}/{self.group}/{self.service}"


@dataclass(frozen=True)
class Version:
    number: int
    toml: str
    keys: str | None
    """The ``[auth] keys`` file's text, when one was pushed with the config."""
    by: str
    at: float
    comment: str = ""
    source: str = ""
    sha256: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Version:
        data = json.loads(raw)
        return cls(
            number=int(data["number"]),
            toml=str(data["toml"]),
            keys=data.get("keys"),
            by=str(data.get("by", "")),
            at=float(data.get("at", 0.0)),
            comment=str(data.get("comment", "")),
            source=str(data.get("source", "")),
            sha256=str(data.get("sha256", "")),
        )


@dataclass(frozen=True)
class Current:
    """Where a group's ``current`` points, and how it got there."""

    number: int
    by: str
    at: float
    action: str  # "push" or "rollback"
    previous: int | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Current:
        data = json.loads(raw)
        previous = data.get("previous")
        return cls(
            number=int(data["number"]),
            by=str(data.get("by", "")),
            at=float(data.get("at", 0.0)),
            action=str(data.get("action", "push")),
            previous=int(previous) if previous is not None else None,
        )


def digest(toml: str, keys: str | None) -> str:
    hasher = hashlib.sha256(toml.encode())
    if keys is not None:
        hasher.update(b"\0" + keys.encode())
    return hasher.hexdigest()


@contextlib.asynccontextmanager
async def connect(endpoints: str, timeout: float = 5.0) -> AsyncIterator[aetcd.Client]:
    """A client on the first of ``endpoints`` that answers; ConfigStoreError when none does."""
    errors = []
    for host, port in parse_endpoints(endpoints):
        client = aetcd.Client(host=host, port=port, timeout=timeout)
        try:
            await client.connect()
            await client.get(b"/aiges/config")  # the member answers, with a quorum
        except Exception as exc:  # noqa: BLE001 - any failure: the next member
            errors.append(f"{host}:{port}: {type(exc).__name__}: {exc}".rstrip(": "))
            with contextlib.suppress(Exception):
                await client.close()
            continue
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        return
    raise ConfigStoreError("etcd cannot be reached: " + "; ".join(errors or ["no endpoint given"]))


class ConfigStore:
    def __init__(self, client: aetcd.Client) -> None:
        self.client = client

    async def current(self, scope: Scope) -> tuple[Current | None, int]:
        """The group's current pointer (None before the first push) and the store's revision."""
        reply = await self.client.get_prefix(scope.current_key)
        revision = int(reply.header.revision)
        for kv in reply:
            if kv.key == scope.current_key:
                return Current.decode(kv.value), revision
        return None, revision

    async def version(self, scope: Scope, number: int) -> Version | None:
        kv = await self.client.get(scope.version_key(number))
        return Version.decode(kv.value) if kv is not None else None

    async def current_version(self, scope: Scope) -> tuple[Version | None, Current | None, int]:
        current, revision = await self.current(scope)
        if current is None:
            return None, None, revision
        version = await self.version(scope, current.number)
        if version is None:
            raise ConfigStoreError(f"{scope.label()}: current points at version {current.number}, which is missing")
        return version, current, revision

    async def versions(self, scope: Scope) -> list[Version]:
        listing = await self.client.get_prefix(scope.versions_prefix, sort_order="ascend")
        return [Version.decode(kv.value) for kv in listing]

    async def groups(self, project: str, service: str, root: str = ROOT) -> list[str]:
        """The groups of ``project`` that have a config for ``service``."""
        prefix = f"{root.rstrip('/')}/{project}/".encode()
        listing = await self.client.get_prefix(prefix, keys_only=True)
        found = set()
        for kv in listing:
            parts = kv.key[len(prefix) :].decode().split("/")
            if len(parts) == 3 and parts[1] == service and parts[2] == "current":
                found.add(parts[0])
        return sorted(found)

    async def push(
        self, scope: Scope, toml: str, keys: str | None, *, by: str, comment: str = "", source: str = ""
    ) -> Version:
        """Store the next version and make it current (the caller validated it)."""
        tx = self.client.transactions
        for _ in range(PUSH_ATTEMPTS):
            versions = await self.client.get_prefix(scope.versions_prefix, keys_only=True)
            last = max((int(kv.key[len(scope.versions_prefix) :]) for kv in versions), default=0)
            current, _ = await self.current(scope)
            version = Version(
                number=last + 1,
                toml=toml,
                keys=keys,
                by=by,
                at=time.time(),
                comment=comment,
                source=source,
                sha256=digest(toml, keys),
            )
            pointer = Current(version.number, by, version.at, "push", current.number if current else None)
            key = scope.version_key(version.number)
            succeeded, _ = await self.client.transaction(
                compare=[tx.create(key) == 0],
                success=[tx.put(key, version.encode()), tx.put(scope.current_key, pointer.encode())],
                failure=[],
            )
            if succeeded:
                return version
        raise ConfigStoreError(f"{scope.label()}: other pushes kept taking the next version number; try again")

    async def rollback(self, scope: Scope, to: int | None, *, by: str) -> Current:
        """Point ``current`` at version ``to`` (None: the one before the current one)."""
        tx = self.client.transactions
        reply = await self.client.get_prefix(scope.current_key)
        kv = next((kv for kv in reply if kv.key == scope.current_key), None)
        if kv is None:
            raise ConfigStoreError(f"{scope.label()}: nothing was pushed here yet")
        current = Current.decode(kv.value)
        target = to if to is not None else current.number - 1
        if target < 1 or await self.version(scope, target) is None:
            raise ConfigStoreError(f"{scope.label()}: there is no version {target} to roll back to")
        if target == current.number:
            raise ConfigStoreError(f"{scope.label()}: version {target} is already current")
        pointer = Current(target, by, time.time(), "rollback", current.number)
        succeeded, _ = await self.client.transaction(
            compare=[tx.mod(scope.current_key) == kv.mod_revision],
            success=[tx.put(scope.current_key, pointer.encode())],
            failure=[],
        )
        if not succeeded:
            raise ConfigStoreError(f"{scope.label()}: current moved while rolling back; look again and retry")
        return pointer


def version_record(version: Version, current: Current | None) -> dict[str, Any]:
    """A version as ``aiges config list --json`` prints it."""
    return {
        "version": version.number,
        "by": version.by,
        "at": version.at,
        "comment": version.comment,
        "source": version.source,
        "sha256": version.sha256,
        "keys": version.keys is not None,
        "current": current is not None and current.number == version.number,
    }
