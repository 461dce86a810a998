"""HAProxy's runtime API, over its admin socket: one connection per command, answered until EOF.

Only what the gateway needs: ``set server <backend>/<server> addr|state|weight``, ``add map``,
``set map``, ``del map``, ``show servers state`` (each server's address, state and weight, and
whether HAProxy's own checks find it up), ``show info``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5.0


class RuntimeApiError(Exception):
    """HAProxy refused a command, or its socket does not answer."""


@dataclass(frozen=True)
class ServerState:
    backend: str
    name: str
    address: str  # ip:port
    operational: int  # srv_op_state: 0 stopped (down), 1 starting, 2 running, 3 stopping
    admin: int  # srv_admin_state flags (HAProxy's SRV_ADMF_*)
    weight: int

    MAINT = 0x01 | 0x02 | 0x20 | 0x40  # forced, inherited, resolution, hostname maintenance
    DRAIN = 0x08 | 0x10  # forced (the API's "state drain") or inherited
    # 0x04, "disabled" in the config, stays set once the API made the server ready: not maint

    @property
    def in_maint(self) -> bool:
        return bool(self.admin & self.MAINT)

    @property
    def draining(self) -> bool:
        return bool(self.admin & self.DRAIN)

    @property
    def up(self) -> bool:
        """HAProxy would send it traffic: not in maintenance, and its checks pass."""
        return not self.in_maint and self.operational == 2

    @property
    def status(self) -> str:
        if self.in_maint:
            return "MAINT"
        if self.operational == 0:
            return "DOWN"
        return "DRAIN" if self.draining else "UP"


class RuntimeApi:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def command(self, line: str) -> str:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.socket)), TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RuntimeApiError(f"HAProxy's socket {self.socket}: {exc}") from None
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RuntimeApiError(f"HAProxy's socket {self.socket}: {line}: {exc}") from None
        finally:
            writer.close()
        return answer.decode(errors="replace")

    async def checked(self, line: str) -> str:
        """A command whose answer must not be an error."""
        answer = await self.command(line)
        lowered = answer.lower()
        if any(word in lowered for word in ("unknown", "no such", "invalid", "require", "not found", "error")):
            raise RuntimeApiError(f"{line}: {answer.strip()}")
        return answer

    async def set_server(self, backend: str, server: str, address: str, state: str, weight: int) -> None:
        name = f"{backend}/{server}"
        if address:
            host, _, port = address.rpartition(":")
            await self.checked(f"set server {name} addr {host.strip('[]')} port {port}")
            await self.checked(f"set server {name} weight {weight}")
        await self.checked(f"set server {name} state {state}")

    async def set_map(self, path: Path, key: str, value: str, known: bool) -> None:
        if known:
            await self.checked(f"set map {path} {key} {value}")
        else:
            await self.checked(f"add map {path} {key} {value}")

    async def del_map(self, path: Path, key: str) -> None:
        await self.checked(f"del map {path} {key}")

    async def servers(self) -> list[ServerState]:
        text = await self.command("show servers state")
        found = []
        for line in text.splitlines():
            parts = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight
            # ... srv_port is the 19th field
            if len(parts) < 19 or not parts[0].isdigit():
                continue
            found.append(
                ServerState(
                    backend=parts[1],
                    name=parts[3],
                    address=f"{parts[4]}:{parts[18]}",
                    operational=int(parts[5]),
                    admin=int(parts[6]),
                    weight=int(parts[7]),
                )
            )
        return found

    async def info(self) -> dict[str, str]:
        text = await self.command("show info")
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
