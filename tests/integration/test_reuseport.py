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
            wait_for(lambda front=front: '"event": "serving"' in front.log() or front.popen.poll() is not None, 60)
            assert front.popen.poll() is None, front.log()
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
