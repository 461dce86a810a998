"""A burst of concurrent calls is limited by the licences, never by the transport: each call gets
an answer (served, or 10110), none a gRPC error."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from conftest import wait_for
from test_operations import status

from aiges.client.values import loader_input
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session

LICENCES = 1500
OPENS = 2000


def open_request(handle: str) -> bytes:
    message = loader_input(state=LoaderInput.STREAM, inputs={"in": b"x"}, expect=["out"], status=0)
    return ReqData(
        op="AIIn", s=Session(h=handle), param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())]
    ).SerializeToString()


async def burst(address: str) -> Counter:
    """OPENS session opens at once, over 4 connections; the code of each answer (or the gRPC
    status name of a transport error)."""
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
    calls = [
        channels[i % 4].unary_unary("/utils.XsfCall/call")(open_request(f"burst-{i:05d}"), timeout=120)
        for i in range(OPENS)
    ]
    outcome: Counter = Counter()
    for reply in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(reply, grpc.aio.AioRpcError):
            outcome[reply.code().name] += 1
            continue
        assert isinstance(reply, bytes), reply
        answer = ResData.FromString(reply)
        output = LoaderOutput.FromString(answer.data[0].data)
        outcome[answer.code or output.code] += 1
    for channel in channels:
        await channel.close()
    return outcome


def test_a_burst_of_2000_opens_gets_exactly_the_licences(serve):
    server = serve("streamer", licences=LICENCES, ttl=3_600_000)
    outcome = asyncio.run(burst(server.address))
    assert outcome == {0: LICENCES, 10110: OPENS - LICENCES}, outcome
    assert status(server)["sessions"] == LICENCES and status(server)["licences_used"] == LICENCES
    with server.client() as client:
        for i in range(OPENS):
            client.call("AIExcp", LoaderInput(), handle=f"burst-{i:05d}")
    wait_for(lambda: status(server)["licences_used"] == 0 and status(server)["sessions"] == 0)
