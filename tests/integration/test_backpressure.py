"""Clients that never read their session's output cannot grow the server's memory: each session
holds at most its output budget ([fc] session_output_kb), then the worker stops reading the
wrapper's output for it; output pushed by wrapper threads (which cannot be paused) ends the
session with 10111 once it is far past the budget. Everything is freed when a session ends.

The flood wrapper produces output without end: 256 KiB per read (about 5 MB/s per session once
the input has ended), or through its callback every 20 ms.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from pathlib import Path

import grpc
import pytest
from conftest import free_port, wait_for
from test_operations import status

from aiges.client import AigesCallError
from aiges.client.values import loader_input
from aiges.protocol import oip_pb2
from aiges.protocol.v2_pb2 import LoaderInput

READ_FOR_S = 30
BUDGET_KB = 2048


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def masked_text_frame(text: str) -> bytes:
    """A client's WebSocket text frame (RFC 6455: masked)."""
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    size = bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + struct.pack("!H", length)
    header = bytes([0x81]) + size
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def websocket_that_never_reads(address: str, path: str, frame: dict) -> socket.socket:
    """Open a WebSocket with a raw socket, send one frame, and leave the replies unread."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(masked_text_frame(json.dumps(frame)))
    return sock


def start(serve, **options):
    http_port = free_port()
    server = serve(
        "flood", licences=16, ttl=3_600_000, maxmb=4, extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n', **options
    )
    server.http = f"127.0.0.1:{http_port}"
    return server


def test_clients_that_never_read_hold_at_most_their_budget(serve):
    server = start(serve, fc_extra=f"session_output_kb = {BUDGET_KB}")
    pid = server.process.pid
    baseline = rss_mb(pid)
    held: list = []
    with server.client() as client:
        # xsf: open, end the input, never ask AIOut
        session = client.session({"in": b"go"}, expect=["out"])
        session.write({"in": b"end"}, last=True)
        held.append(session)
        # native stream: the responses are never consumed
        stream_channel = grpc.insecure_channel(server.address)
        first = loader_input(state=LoaderInput.STREAM, inputs={"in": b"go"}, expect=["out"], status=2)
        held.append(stream_channel.stream_stream("/aiges.v1.Session/Stream")(iter([first.SerializeToString()])))
        # OIP: a sequence whose responses are never consumed
        oip_channel = grpc.insecure_channel(server.address)
        request = oip_pb2.ModelInferRequest(model_name="flood", id="r1")
        request.parameters["sequence_id"].int64_param = 1
        request.parameters["sequence_start"].bool_param = True
        request.inputs.add(name="in", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(struct.pack("<I", 2) + b"go")
        held.append(
            oip_channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")(
                iter([request.SerializeToString()])
            )
        )
        # WebSocket: a raw socket that never reads
        held.append(
            websocket_that_never_reads(
                server.http,
                "/v1/private/flood",
                {"payload": {"in": {"text": base64.b64encode(b"go").decode(), "status": 2}}},
            )
        )
        wait_for(lambda: status(server)["sessions"] == 4)
        peak = baseline
        deadline = time.monotonic() + READ_FOR_S
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            time.sleep(0.2)
        print(f"server RSS {baseline:.0f} MB at start, peak {peak:.0f} MB over {READ_FOR_S} s of unread output")
        assert status(server)["sessions"] == 4  # all still open: the budget, not the TTL, held them
        # 4 sessions x 2 MiB of budget, plus what the transports buffer; unbounded this is GBs
        assert peak - baseline < 120, f"server RSS grew {peak - baseline:.0f} MB (from {baseline:.0f} MB)"
        session.close()
        held[1].cancel()
        held[2].cancel()
        held[3].close()
        stream_channel.close()
        oip_channel.close()
        wait_for(lambda: status(server)["sessions"] == 0 and status(server)["licences_used"] == 0)
        assert client.once({"in": b"x"}, expect=["out"])["out"] == b"once"


def test_output_pushed_by_wrapper_threads_ends_the_session_past_the_limit(serve):
    server = start(serve, fc_extra="session_output_kb = 1024")
    with server.client() as client:
        session = client.session(
            {"in": b"go"}, params={"mode": "push", "kb": "256", "interval_ms": "5"}, expect=["out"]
        )
        wait_for(lambda: status(server)["sessions"] == 0)  # ended by the server, nobody having read
        assert status(server)["licences_used"] == 0
        with pytest.raises(AigesCallError) as failure:
            list(session.results())
        assert failure.value.code in (10111, 10101)
        assert '"session output not read"' in server.log()


def test_a_slow_reader_gets_every_chunk_in_order(serve):
    """Pausing is lossless: a client that reads slowly gets the whole output, in order."""
    server = start(serve, fc_extra="session_output_kb = 512")
    with server.client() as client:
        session = client.session({"in": b"go"}, params={"kb": "128"}, expect=["out"])
        session.write({"in": b"end"}, last=True)
        seqs = []
        for batch in session.results():
            seqs.extend(int(item.attributes["seq"]) for item in batch.items)
            if len(seqs) >= 60:
                break
            time.sleep(0.02)
        session.close()
    assert seqs[:60] == list(range(1, 61))
