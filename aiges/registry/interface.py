"""What every registry backend does: register once serving, keep the entry fresh, remove it
first thing when draining."""

from __future__ import annotations

from typing import Protocol


def provider_key(prefix: str, service: str, version: str, address: str) -> str:
    """``<prefix>/<service>/<version>/providers/<host:port>``."""
    return f"{prefix.rstrip('/')}/{service}/{version}/providers/{address}"


def providers_prefix(prefix: str, service: str, version: str) -> str:
    return f"{prefix.rstrip('/')}/{service}/{version}/providers/"


class Registry(Protocol):
    async def start(self) -> None:
        """Begin registering (the server is SERVING); returns at once, works in the background."""

    def changed(self) -> None:
        """The server's state changed: refresh the entry soon."""

    async def deregister(self) -> None:
        """Remove the entry now and stop."""


class NullRegistry:
    """``[registry] backend = "none"``."""

    async def start(self) -> None:
        return None

    def changed(self) -> None:
        return None

    async def deregister(self) -> None:
        return None
