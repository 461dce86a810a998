"""Several fronts on one port (``[svcName] reuseport``): the kernel spreads connections over them,
and a session keeps to the front its connection reached."""

from __future__ import annotations

import re
import urllib.request

import pytest
from conftest import Server, free_port, render_config, wait_for

from aiges.client import Client

ECHO = "../../demo/echo"


def with_reuseport(config: str, on: bool) -> str:
    return config.replace("[aiges]\n", f"reuseport = {'true' if on else 'false'}\n[aiges]\n", 1)


def served(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r'^aiges_requests_total\{[^}]*front="xsf"[^}]*\} (\S+)', text, re.M))


def fresh_client(address: str) -> Client:
    """A client on its own TCP connection: gRPC shares one between channels of a process unless
    told not to, and the kernel picks a front per connection."""
    return Client(address, options=[("grpc.use_local_subchannel_pool", 1)])


@pytest.fixture
def two_fronts(tmp_path):
    """Two servers of the streamer on one port, each in its own folder (config and log files are
    named by port); yields them with their metrics ports and the shared HTTP port."""
    port, http_port = free_port(), free_port()
    metrics = [free_port(), free_port()]
    http = f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
    fronts = []
    for name, metrics_port in zip("ab", metrics, strict=True):
        (tmp_path / name).mkdir()
        config = with_reuseport(render_config("streamer", port, metrics_port=metrics_port), True) + http
        fronts.append(Server(tmp_path / name, "streamer", port=port, config=config))
    try:
        for front in fronts:
            front.start(wait=False)
        # The port's health answer comes from whichever front a connection reaches: wait for
        # each front's own word that it serves.
        for front in fronts:
            wait_for(lambda front=front: '"event": "serving"' in front.log() or front.process.poll() is not None, 60)
            assert front.process.poll() is None, front.log()
        yield fronts, metrics, http_port
    finally:
        for front in fronts:
            front.stop()


def test_two_fronts_share_a_port_and_each_session_keeps_to_its_front(two_fronts):
    fronts, metrics, http_port = two_fronts
    sessions_done: list[list[bytes]] = []

    def both_fronts_served() -> bool:
        # New connections until the kernel has sent at least one to each front; every one runs
        # a whole session, whose later calls must reach the front holding it.
        with fresh_client(fronts[0].address) as client, client.session(expect=["out"]) as session:
            for i in range(5):
                session.write({"in": f"chunk-{i}".encode()}, last=(i == 4))
            sessions_done.append([item.data for batch in session.results() for item in batch.items])
        return min(served(m) for m in metrics) > 0

    wait_for(both_fronts_served, timeout=60, interval=0)
    assert sessions_done and all(items == [f"chunk-{i}".encode() for i in range(5)] for items in sessions_done), (
        sessions_done
    )
    status, body = http_get(f"http://127.0.0.1:{http_port}/v2/health/ready")
    assert status == 200, body


def test_without_reuseport_a_taken_port_is_an_error(serve):
    first = serve(ECHO)
    second = serve(ECHO, port=first.port, wait=False, config=with_reuseport(render_config(ECHO, first.port), False))
    assert second.wait(60) != 0
    assert "cannot listen" in second.log()
    with first.client() as client:
        assert client.once({"text": b"still here"}, expect=["text"])["text"] == b"still here"


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.read().decode()


# -- the host's promises across its fronts (aiges.server.host_state) -------------------------------------

SIGNED_KEYS = '[[app]]\napp_id = "a1"\napi_key = "key-1"\napi_secret = "secret-1"\n'
XSF = "/utils.XsfCall/call"


def counted(metrics_port: int, pattern: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def answered(metrics_port: int) -> float:
    """xsf calls a front answered, or refused at its caller check."""
    return served(metrics_port) + counted(metrics_port, r'^aiges_auth_refused_total\{[^}]*front="xsf"[^}]*\} (\S+)')


@pytest.fixture
def hmac_fronts(tmp_path):
    """``count`` servers of the counting wrapper in hmac mode on one port, sharing a host state
    folder; yields (fronts, metrics ports, their front indices as their logs say)."""
    import json
    import shutil
    import tempfile

    started: list[Server] = []
    state_dir = tempfile.mkdtemp(prefix="aiges-")  # short: the fronts' socket paths must fit AF_UNIX

    def start(count: int):
        port = free_port()
        metrics = [free_port() for _ in range(count)]
        keys = tmp_path / "keys.toml"
        keys.write_text(SIGNED_KEYS)
        for index, metrics_port in enumerate(metrics):
            folder = tmp_path / f"front-{index}"
            folder.mkdir()
            config = render_config(
                "counting", port, metrics_port=metrics_port, wrapper_config={"calls_log": str(folder / "calls.log")}
            )
            config = config.replace("[aiges]\n", f'reuseport = true\nstate_dir = "{state_dir}"\n[aiges]\n', 1)
            config += f'[auth]\nmode = "hmac"\nkeys = "{keys}"\n'
            started.append(Server(folder, "counting", port=port, config=config))
        for front in started:
            front.start(wait=False)
        for front in started:
            wait_for(lambda front=front: '"event": "serving"' in front.log() or front.process.poll() is not None, 60)
            assert front.process.poll() is None, front.log()
        indices = []
        for front in started:
            joined = next(json.loads(line) for line in front.log().splitlines() if "joined the host" in line)
            indices.append(joined["front"])
        return started, metrics, indices

    try:
        yield start
    finally:
        for front in started:
            front.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def calls_made(front: Server) -> int:
    log = front.workdir / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("count", [2, 3])
def test_a_nonced_signature_replayed_against_every_front_is_accepted_once(hmac_fronts, count):
    from test_security import grpc_request

    from aiges.client import SigningKey
    from aiges.client.credentials import open_channel

    fronts, metrics, indices = hmac_fronts(count)
    assert sorted(indices) == list(range(count))
    metadata = list(SigningKey("key-1", "secret-1").sign_headers("127.0.0.1", "POST", XSF).items())
    outcomes = []

    def every_front_answered() -> bool:
        with open_channel(fronts[0].address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            outcomes.append(grpc_request(channel, "xsf", metadata))
        return min(answered(m) for m in metrics) > 0

    wait_for(every_front_answered, timeout=60, interval=0)
    assert outcomes.count(("OK", 0)) == 1, outcomes
    assert outcomes.count(("UNAUTHENTICATED", 10135)) == len(outcomes) - 1, outcomes
    assert sum(calls_made(front) for front in fronts) == 1


def test_a_handle_names_the_front_that_made_it(hmac_fronts):
    from aiges.client import SigningKey
    from aiges.protocol.handle import read_handle

    fronts, metrics, indices = hmac_fronts(2)
    seen: dict[int, set[int]] = {0: set(), 1: set()}

    def each_front_made_one() -> bool:
        before = [served(m) for m in metrics]
        client = Client(
            fronts[0].address,
            signing=SigningKey("key-1", "secret-1"),
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        with client:
            handle = client.once({"text": b"x"}, expect=["text"]).handle
        which = next(i for i, m in enumerate(metrics) if served(m) > before[i])
        seen[which].add(read_handle(handle).front)
        return all(seen.values())

    wait_for(each_front_made_one, timeout=60, interval=0)
    assert seen == {0: {indices[0]}, 1: {indices[1]}}
