"""xsf service handles: 26 characters that also tell an xsf client where the session lives.

    "0" + 8 hex digits of the IPv4 address + 4 of the port + 6 of a counter + 7 of the seconds
    since the generator started

xsf clients route a session's later calls by decoding characters 1-8 (address) and 9-12 (port),
and reject handles shorter than 26 characters, so this exact shape is part of the protocol.
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
import socket
import time

HANDLE_LENGTH = 26


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
    """``first``: where the counter starts; by default a random point, so that several fronts
    sharing one port (``[svcName] reuseport``) do not hand out the same handles."""

    def __init__(self, ip: str, port: int, first: int | None = None) -> None:
        packed = ipaddress.IPv4Address(ip).packed
        self.prefix = "0" + packed.hex() + f"{port & 0xFFFF:04x}"
        self._counter = itertools.count(secrets.randbelow(1 << 24) if first is None else first)
        self._start = time.monotonic()

    def next(self) -> str:
        count = next(self._counter) & 0xFFFFFF
        seconds = int(time.monotonic() - self._start) & 0xFFFFFFF
        return f"{self.prefix}{count:06x}{seconds:07x}"


def decode_handle(handle: str) -> tuple[str, int]:
    """The (IPv4, port) an xsf client would route ``handle`` to."""
    if len(handle) != HANDLE_LENGTH:
        raise ValueError(f"an xsf handle has {HANDLE_LENGTH} characters, got {len(handle)}")
    ip = str(ipaddress.IPv4Address(bytes.fromhex(handle[1:9])))
    return ip, int(handle[9:13], 16)
