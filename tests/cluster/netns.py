"""A private network built out of Linux network namespaces, with no way out of the machine.

``World("x1")`` makes the namespace ``aiges-cl-x1`` holding a bridge; each node is a namespace
``aiges-cl-x1-<node>`` joined to that bridge by a veth pair (one end inside the node as ``eth0``
with its address, the other end on the bridge inside the world). No interface of the world or
of a node leads to the machine's own namespace and no node has a default route, so every packet
stays between the nodes. Cutting a node's link sets its end on the bridge down.

Everything is removed by ``destroy`` (each namespace's processes are killed by id first), and
``clean_stale`` removes what a crashed run may have left (``python tests/cluster/netns.py``: the
namespaces whose maker has exited; ``--all``, as ``make cluster-clean`` does: every one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PREFIX = "aiges-cl-"
SUBNET = "10.77.0"
BRIDGE = "br0"


class NetnsError(Exception):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def namespaces() -> list[str]:
    result = ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def namespace_pids(name: str) -> list[int]:
    result = ip("netns", "pids", name, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def kill_namespace(name: str) -> None:
    """SIGKILL every process in the namespace (by id), wait for them, delete the namespace."""
    deadline = time.monotonic() + 10
    while (pids := namespace_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    ip("netns", "del", name, check=False)


def owner_alive(name: str) -> bool:
    """Whether the process that made this namespace (``aiges-cl-<pid>...``) still runs."""
    owner = name.removeprefix(PREFIX).split("-")[0]
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(everything: bool = False) -> list[str]:
    """Remove the ``aiges-cl-*`` namespaces whose maker is gone (``everything``: all of them),
    nodes first, then their worlds."""
    stale = sorted(
        (n for n in namespaces() if n.startswith(PREFIX) and (everything or not owner_alive(n))), key=len, reverse=True
    )
    for name in stale:
        kill_namespace(name)
    return stale


class World:
    def __init__(self, run_id: str) -> None:
        self.name = f"{PREFIX}{run_id}"
        self.nodes: dict[str, str] = {}
        """node -> its address."""

    def namespace(self, node: str) -> str:
        return f"{self.name}-{node}"

    def create(self) -> World:
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        ip("-n", self.name, "link", "add", "name", BRIDGE, "type", "bridge")
        ip("-n", self.name, "link", "set", BRIDGE, "up")
        return self

    def add_node(self, node: str, octet: int) -> str:
        """A namespace with ``eth0`` at ``10.77.0.<octet>/24`` on the world's bridge; its address."""
        if len(node) > 12:
            raise ValueError(f"node name {node!r} is too long for an interface name")
        namespace = self.namespace(node)
        address = f"{SUBNET}.{octet}"
        ip("netns", "add", namespace)
        self.nodes[node] = address
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", self.name, "link", "add", "name", node, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("-n", self.name, "link", "set", node, "master", BRIDGE, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        return address

    def set_link(self, node: str, up: bool) -> None:
        """Plug or unplug a node: its veth end on the bridge up or down."""
        ip("-n", self.name, "link", "set", node, "up" if up else "down")

    def routes(self, node: str) -> str:
        return ip("-n", self.namespace(node), "route", "show").stdout

    def spawn(
        self,
        node: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> subprocess.Popen:
        """Run ``argv`` inside the node (``ip netns exec`` execs it: the process id is the command's)."""
        command = ["ip", "netns", "exec", self.namespace(node), *argv]
        if pipes:
            return subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(log_path, "ab") if log_path else subprocess.DEVNULL,  # noqa: SIM115
                env=env,
                cwd=cwd,
                text=True,
                bufsize=1,
            )
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
        try:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        finally:
            if not isinstance(log, int):
                log.close()

    def destroy(self) -> None:
        for node in list(self.nodes):
            kill_namespace(self.namespace(node))
        kill_namespace(self.name)
        self.nodes.clear()


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "the cluster tests need root (network namespaces)"
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except FileNotFoundError:
        return "iproute2 (ip) is not installed"
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe, check=False)
    return None


if __name__ == "__main__":
    import sys

    removed = clean_stale(everything="--all" in sys.argv[1:])
    print(f"removed {len(removed)} namespace(s)" + (": " + ", ".join(removed) if removed else ""))
