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


# -- the host's promises across its fronts (aiges.server.host_state) -------------------------------------

SIGNED_KEYS = """
[[app]]
app_id = "a1"
api_key = "key-1"
api_secret = "secret-1"

[[app]]
app_id = "a2"
api_key = "key-2"
api_secret = "secret-2"

[[app]]
app_id = "rated"
api_key = "key-rated"
api_secret = "secret-rated"
rate = 0.01
burst = 2
"""
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

    def start(count: int, wrapper: str = "counting", licences: int = 100):
        port = free_port()
        metrics = [free_port() for _ in range(count)]
        keys = tmp_path / "keys.toml"
        keys.write_text(SIGNED_KEYS)
        for index, metrics_port in enumerate(metrics):
            folder = tmp_path / f"front-{index}"
            folder.mkdir()
            config = render_config(
                wrapper,
                port,
                metrics_port=metrics_port,
                licences=licences,
                wrapper_config={"calls_log": str(folder / "calls.log")},
            )
            config = config.replace("[aiges]\n", f'reuseport = true\nstate_dir = "{state_dir}"\n[aiges]\n', 1)
            config += f'[auth]\nmode = "hmac"\nkeys = "{keys}"\n'
            started.append(Server(folder, wrapper, port=port, config=config))
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


def forwarded(metrics_port: int) -> float:
    """Calls a front served for sessions it holds that reached another front first."""
    return counted(metrics_port, r'^aiges_requests_total\{[^}]*front="xsf-local"[^}]*\} (\S+)')


def test_a_session_continued_on_other_connections_is_served_by_the_front_that_holds_it(two_fronts):
    fronts, metrics, _ = two_fronts
    finished: list[list[bytes]] = []

    def some_frame_was_passed_on() -> bool:
        with fresh_client(fronts[0].address) as opener:
            session = opener.session(expect=["out"])
            for i in range(4):  # every later call on a connection of its own: any front may get it
                with fresh_client(fronts[0].address) as client:
                    session.client = client
                    session.write({"in": f"part-{i}".encode()}, last=(i == 3))
                    results = [item.data for batch in session.results() for item in batch.items] if i == 3 else []
            finished.append(results)
        return sum(forwarded(m) for m in metrics) > 0 and min(served(m) for m in metrics) > 0

    wait_for(some_frame_was_passed_on, timeout=90, interval=0)
    assert all(items == [f"part-{i}".encode() for i in range(4)] for items in finished), finished


def test_another_apps_calls_on_a_session_are_unknown_on_every_front(hmac_fronts):
    from aiges.client import SigningKey
    from aiges.client.values import loader_input
    from aiges.protocol.v2_pb2 import LoaderInput

    fronts, metrics, _ = hmac_fronts(2, wrapper="streamer")
    owner = SigningKey("key-1", "secret-1")
    intruder = SigningKey("key-2", "secret-2")
    frame = loader_input(state=LoaderInput.STREAM, inputs={"in": b"stolen"}, status=1)
    codes: list[int] = []
    reached: set[int] = set()
    with Client(fronts[0].address, signing=owner) as client, client.session(expect=["out"]) as session:
        session.write({"in": b"mine-0"})

        def every_front_refused() -> bool:
            before = [answered(m) for m in metrics]
            with Client(fronts[0].address, signing=intruder, options=[("grpc.use_local_subchannel_pool", 1)]) as other:
                for op, message in (("AIIn", frame), ("AIOut", None), ("AIExcp", None)):
                    code, _, _, output = other.call(op, message, handle=session.handle)
                    codes.append(output.code if output is not None and output.code else code)
            reached.update(i for i, m in enumerate(metrics) if answered(m) > before[i])
            return len(reached) == len(metrics)

        wait_for(every_front_refused, timeout=60, interval=0)
        session.write({"in": b"mine-1"}, last=True)
        results = [item.data for batch in session.results() for item in batch.items]
    assert codes and set(codes) == {10008}, codes
    assert results == [b"mine-0", b"mine-1"], results


def test_an_apps_rate_holds_for_the_host_not_per_front(hmac_fronts):
    from aiges.client import AigesCallError, SigningKey

    fronts, metrics, _ = hmac_fronts(2)
    rated = SigningKey("key-rated", "secret-rated")  # burst 2, then 0.01 calls/s
    outcomes: list[int] = []

    def both_fronts_answered() -> bool:
        with Client(fronts[0].address, signing=rated, options=[("grpc.use_local_subchannel_pool", 1)]) as client:
            try:
                client.once({"text": b"x"}, expect=["text"])
                outcomes.append(0)
            except AigesCallError as exc:
                outcomes.append(exc.code)
        return len(outcomes) >= 4 and min(answered(m) for m in metrics) > 0

    wait_for(both_fronts_answered, timeout=60, interval=0)
    assert outcomes.count(0) == 2, outcomes
    assert set(outcomes) == {0, 10140}, outcomes


LICENCES = 2


def test_the_licences_are_the_hosts_however_many_fronts(hmac_fronts):
    from aiges.client import AigesCallError, SigningKey

    fronts, metrics, _ = hmac_fronts(2, wrapper="streamer", licences=LICENCES)
    key = SigningKey("key-1", "secret-1")
    held = []
    refusals: list[int] = []
    reached: set[int] = set()
    try:
        for _ in range(LICENCES):
            client = Client(fronts[0].address, signing=key, options=[("grpc.use_local_subchannel_pool", 1)])
            held.append((client, client.session(expect=["out"])))

        def both_fronts_refused() -> bool:
            before = [answered(m) for m in metrics]
            with Client(fronts[0].address, signing=key, options=[("grpc.use_local_subchannel_pool", 1)]) as client:
                try:
                    client.once({"in": b"x"}, expect=["out"])
                    refusals.append(0)
                except AigesCallError as exc:
                    refusals.append(exc.code)
            reached.update(i for i, m in enumerate(metrics) if answered(m) > before[i])
            return len(reached) == len(metrics)

        wait_for(both_fronts_refused, timeout=60, interval=0)
    finally:
        for client, session in held:
            session.close()
            client.close()
    assert refusals and set(refusals) == {10110}, refusals
