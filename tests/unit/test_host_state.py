"""The host state the fronts of one port share: licences, per-app rate and sessions, the replay
cache and the live fronts, with several real processes using one state (``host_state_peer.py``)
and one of them killed with SIGKILL: its share is given back to the host."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aiges.server.host_state import HostSettings, HostState, HostStateError, joined

PEER = Path(__file__).resolve().parent / "host_state_peer.py"
PORT = 5090


def wait_for(predicate, timeout: float = 20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Peer:
    """A process that joined the host state, driven one command at a time."""

    def __init__(self, folder: Path, licences: int = 10, replay_mb: int = 1) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PEER), str(folder), str(PORT), str(licences), str(replay_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.joined = self.read()

    def send(self, *command) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def read(self):
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the peer exited ({self.process.poll()})"
        return json.loads(line)

    def __call__(self, *command):
        self.send(*command)
        return self.read()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def peers(tmp_path):
    started: list[Peer] = []
    folder = tmp_path / "state"

    def start(**options) -> Peer:
        peer = Peer(folder, **options)
        started.append(peer)
        return peer

    start.folder = folder  # type: ignore[attr-defined]
    yield start
    for peer in started:
        peer.stop()


def test_licences_are_the_hosts_and_a_killed_fronts_come_back(peers):
    fronts = [peers(licences=10) for _ in range(3)]
    assert all(front.joined == "joined" for front in fronts)
    taken = [front("acquire", 6) for front in fronts]
    assert sum(taken) == 10 and taken[0] == 6
    assert fronts[1]("counts", "-")[:2] == [10, 10]
    fronts[0].kill()
    # the killed front's 6 are given back when the others next find the host full
    wait_for(lambda: fronts[1]("acquire", 1) == 1)
    assert fronts[2]("acquire", 10) + 1 == 6
    assert fronts[1]("counts", "-")[:2] == [10, 10]
    fronts[2]("release", 2)
    assert fronts[1]("acquire", 5) == 2


def test_an_apps_rate_is_the_hosts(peers):
    fronts = [peers() for _ in range(3)]
    for front in fronts:  # the three take turns, so that all race for the one bucket
        front.send("token", "a1", 0.001, 6, 5)
    assert sum(front.read() for front in fronts) == 6
    assert sum(front("token", "a2", 0.001, 2, 5) for front in fronts) == 2, "each app has its own bucket"
    assert sum(front("token", "free", 0, 0, 5) for front in fronts) == 15, "no rate: no limit"


def test_an_apps_sessions_are_the_hosts_and_a_killed_fronts_come_back(peers):
    fronts = [peers() for _ in range(3)]
    opened = [front("open", "a1", 4, 3) for front in fronts]
    assert opened == [3, 1, 0]
    assert fronts[2]("counts", "a1")[2] == 4
    fronts[0].kill()
    wait_for(lambda: fronts[2]("open", "a1", 4, 1) == 1)
    assert fronts[2]("open", "a1", 4, 5) == 2
    assert fronts[1]("counts", "a1")[2] == 4
    fronts[1]("close", "a1", 1)
    assert fronts[2]("open", "a1", 4, 5) == 1


def test_a_nonced_signature_is_a_first_use_once_on_the_host(peers):
    fronts = [peers() for _ in range(3)]
    chosen = random.Random(3)
    signatures = [chosen.randbytes(32).hex() for _ in range(300)]
    for front in fronts:  # sent to all before any answer is read: they race
        front.send("replay", signatures, 300.0, 1.0)
    answers = [front.read() for front in fronts]
    for index in range(len(signatures)):
        assert sum(answer[index] for answer in answers) == 1, signatures[index]


def test_the_live_fronts_their_indices_and_sockets(peers):
    fronts = [peers() for _ in range(3)]
    indices = [front("front") for front in fronts]
    assert sorted(indices) == [0, 1, 2]
    listed = fronts[0]("fronts")
    assert [(index, pid) for index, pid, _ in listed] == [(front("front"), front.process.pid) for front in fronts]
    assert all(socket == str(peers.folder / f"aiges-{PORT}-front-{index}.sock") for index, _, socket in listed)
    fronts[1].kill()
    assert [index for index, _, _ in fronts[0]("fronts")] == [indices[0], indices[2]]
    newcomer = peers()
    assert newcomer("front") == indices[1], "the dead front's slot is taken again"


def test_fronts_with_other_settings_are_refused_while_the_first_ones_live(peers):
    first = peers(licences=10)
    other = peers(licences=20)
    assert "other settings" in other.joined["error"] and "[fc] max" in other.joined["error"]
    assert first("leave") == "left"
    assert not list(peers.folder.glob("*.state")), "the last front to leave removes the file"
    assert peers(licences=20).joined == "joined"


# -- in one process: each HostState has its own open file, so they behave as two fronts ----------------


def settings(folder: Path, licences: int = 3) -> HostSettings:
    return HostSettings(folder, PORT, licences, 1 << 20)


def test_two_fronts_in_one_process_share_and_a_leaving_one_gives_back(tmp_path):
    with joined(settings(tmp_path)) as one:
        two = HostState.join(settings(tmp_path))
        assert (one.front, two.front) == (0, 1)
        assert [one.acquire_licence(), two.acquire_licence(), two.acquire_licence(), one.acquire_licence()] == [
            True,
            True,
            True,
            False,
        ]
        assert two.open_session("a1", 1) and not one.open_session("a1", 1)
        two.close()
        assert one.licences_used() == 1 and one.sessions("a1") == 0
        assert one.acquire_licence() and one.open_session("a1", 1)
        assert [front.index for front in one.fronts()] == [0] and one.front_info(1) is None
        assert one.resize_licences(5) is None and one.licences_total() == 5
    assert not list(tmp_path.glob("*.state"))


def test_a_folder_others_may_write_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    with pytest.raises(HostStateError, match="writable by no other"):
        HostState.join(settings(folder))


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path):
    folder = tmp_path / ("x" * 100)
    with pytest.raises(HostStateError, match="at most 107 bytes"):
        HostState.join(settings(folder))
