"""Service handles (xsf session ids): the original's shape where clients parse it, then 128 random
bits, so that no caller can guess another's handle.

    "0" + 8 hex digits of the IPv4 address + 4 of the port      (the original's first 13)
        + 2 of the front index + 32 of random bits               (47 characters, lowercase hex)

xsf clients route a session's later calls by decoding characters 1-8 (address) and 9-12
(port), and refuse a handle shorter than 26 characters; they parse nothing past the port (the
original's xsf client: ``client/caller.go`` ``continueCall`` checks ``len(h) < 26``,
``client/loadbalance.go`` ``findWithHandle`` reads ``h[1:9]`` and ``h[9:13]``), so a longer
handle reaches the same server. The original's own 26 characters went on with a counter and the
seconds since start: easy to predict. The front index says which of the fronts sharing the port
on that host (``[svcName] reuseport``) made the handle and holds its session.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass

XSF_MIN_LENGTH = 26
"""The shortest handle an xsf client accepts (its own check)."""
RANDOM_BITS = 128
HANDLE_LENGTH = 13 + 2 + RANDOM_BITS // 4
MAX_FRONTS = 256
"""Front indices fit the handle's two hex digits."""
_HEX = frozenset("0123456789abcdef")


def primary_ipv4() -> str:
    """The address other hosts reach this one at (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def advertised_ipv4(host: str) -> str:
    """The IPv4 address to put in handles for a server bound to ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            return socket.gethostbyname(host)
        except OSError:
            return primary_ipv4()
    if address.version == 4 and not address.is_unspecified:
        return str(address)
    return primary_ipv4()


class HandleGenerator:
    """Handles for the server at ``ip:port``; ``front``: this front's index among the fronts
    sharing the port (``aiges.server.host_state``; 0 when it is alone)."""

    def __init__(self, ip: str, port: int, front: int = 0) -> None:
        if not 0 <= front < MAX_FRONTS:
            raise ValueError(f"a front index is 0-{MAX_FRONTS - 1}, got {front}")
        packed = ipaddress.IPv4Address(ip).packed
        self.front = front
        self.prefix = "0" + packed.hex() + f"{port & 0xFFFF:04x}" + f"{front:02x}"

    def next(self) -> str:
        return self.prefix + secrets.token_hex(RANDOM_BITS // 8)


@dataclass(frozen=True, slots=True)
class HandleInfo:
    ip: str
    port: int
    front: int | None
    """The front that made it, for a handle of this server's form; None for any other (an
    original server's, or one a client chose)."""


def read_handle(handle: str) -> HandleInfo:
    """What an xsf client reads from ``handle`` (and, for ours, the front); ValueError if it
    could not route it."""
    if len(handle) < XSF_MIN_LENGTH:
        raise ValueError(f"an xsf handle has at least {XSF_MIN_LENGTH} characters, got {len(handle)}")
    try:
        ip = str(ipaddress.IPv4Address(bytes.fromhex(handle[1:9])))
        port = int(handle[9:13], 16)
    except ValueError:
        raise ValueError("an xsf handle's characters 1-12 are the hex of an IPv4 address and a port") from None
    ours = len(handle) == HANDLE_LENGTH and handle[0] == "0" and set(handle) <= _HEX
    return HandleInfo(ip, port, int(handle[13:15], 16) if ours else None)


def decode_handle(handle: str) -> tuple[str, int]:
    """The (IPv4, port) an xsf client would route ``handle`` to."""
    info = read_handle(handle)
    return info.ip, info.port


def front_of(handle: str) -> int | None:
    """The index of the front that made ``handle``; None when it is not of this server's form."""
    try:
        return read_handle(handle).front
    except ValueError:
        return None
