"""First frames that reuse a handle still in use (a gateway or a retrying client that reuses a
sid): the second gets 10105 and touches nothing of the first; no licence or wrapper session is
ever left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_for
from test_operations import status

from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, Session

SESSION_REPEAT = 10105


def first_frame(handle: str, state: int, inputs: dict, params: dict | None = None, expect=None) -> ReqData:
    message = loader_input(
        state=state,
        inputs=inputs,
        params=params,
        headers={"sid": handle},
        expect=expect,
        status=3 if state == LoaderInput.ONCE else 0,
    )
    return ReqData(
        op="AIIn", s=Session(h=handle), param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())]
    )


def code_of(reply) -> int:
    output = LoaderOutput.FromString(reply.data[0].data) if reply.data else None
    return reply.code or (output.code if output is not None else 0)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_concurrent_one_shot_calls_on_one_handle(serve):
    server = serve("faulty", licences=300)
    with server.client() as client:
        futures = []
        for pair in range(100):
            request = first_frame(
                f"dup-once-{pair:04d}",
                LoaderInput.ONCE,
                {"text": b"x"},
                params={"mode": "sleep", "seconds": "0.02"},
                expect=["text"],
            )
            futures.append((client.stub.call.future(request, timeout=60), client.stub.call.future(request, timeout=60)))
        codes = [(code_of(a.result()), code_of(b.result())) for a, b in futures]  # a gRPC error raises here
        assert all(set(pair) <= {0, SESSION_REPEAT} and 0 in pair for pair in codes), codes
        assert any(SESSION_REPEAT in pair for pair in codes)  # the pairs did overlap
        wait_for(lambda: status(server)["licences_used"] == 0)
        assert client.once({"text": b"after"}, expect=["text"])["text"] == b"after"


def test_concurrent_session_opens_on_one_handle(serve, tmp_path):
    created, destroyed = tmp_path / "created.txt", tmp_path / "destroyed.txt"
    server = serve(
        "streamer",
        licences=300,
        ttl=3_600_000,
        wrapper_config={"create_log": str(created), "destroy_log": str(destroyed)},
    )
    with server.client() as client:
        futures = []
        for pair in range(50):
            request = first_frame(f"dup-sess-{pair:04d}", LoaderInput.STREAM, {"in": b"x"}, expect=["out"])
            futures.append((client.stub.call.future(request, timeout=60), client.stub.call.future(request, timeout=60)))
        codes = [(code_of(a.result()), code_of(b.result())) for a, b in futures]
        assert all(sorted(pair) == [0, SESSION_REPEAT] for pair in codes), codes
        assert status(server)["sessions"] == 50 and sorted(lines(created)) == sorted(set(lines(created)))
        for pair in range(50):
            code, _, _, output = client.call("AIExcp", LoaderInput(), handle=f"dup-sess-{pair:04d}")
            assert code == 0 and output.code == 0
        wait_for(lambda: len(lines(destroyed)) == 50)
        assert sorted(lines(created)) == sorted(lines(destroyed))
        wait_for(lambda: status(server)["licences_used"] == 0 and status(server)["sessions"] == 0)


@pytest.mark.parametrize("transport", ["xsf"])
def test_a_handle_is_reusable_once_its_session_has_ended(serve, tmp_path, transport):
    created, destroyed = tmp_path / "created.txt", tmp_path / "destroyed.txt"
    server = serve("streamer", wrapper_config={"create_log": str(created), "destroy_log": str(destroyed)})
    with server.client() as client:
        for round_ in range(20):
            with client.session(
                {"in": f"r{round_}".encode()}, expect=["out"], handle="reused-handle", transport=transport
            ) as session:
                session.write({"in": b"end"}, last=True)
                assert [i.data for b in session.results() for i in b.items] == [f"r{round_}".encode(), b"end"]
    wait_for(lambda: len(lines(destroyed)) == 20)
    assert lines(created) == lines(destroyed) == ["reused-handle"] * 20
    wait_for(lambda: status(server)["licences_used"] == 0)
