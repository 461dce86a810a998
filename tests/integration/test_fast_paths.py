"""The fast paths stay correct: payloads through the socket and through shared memory, and
dynamic batching."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT

ECHO = ROOT / "demo" / "echo"


@pytest.mark.parametrize("shm_mb", [64, 0])
def test_payloads_are_byte_exact_from_0_bytes_to_16_mib(serve, shm_mb):
    server = serve(ECHO, maxmb=40, shm_mb=shm_mb)
    with server.client(max_message_mb=40) as client:
        for size in (0, 1, 4095, 65536, 1 << 20, 16 << 20):
            payload = random.randbytes(size)
            assert client.once({"data": payload}, expect=["data"])["data"] == payload


def test_concurrent_large_payloads_do_not_mix(serve):
    server = serve(ECHO, workers=2, maxmb=8, shm_mb=4)
    with server.client() as client:
        payloads = [bytes([i]) * (1 << 20) + random.randbytes(i) for i in range(24)]

        def call(payload: bytes) -> bytes:
            return client.once({"data": payload}, expect=["data"])["data"]

        with ThreadPoolExecutor(12) as executor:
            assert list(executor.map(call, payloads)) == payloads


def batching(serve, **options):
    return serve("batcher", extra="[batch]\nmax_size = 8\nmax_delay_ms = 50\n", **options)


def call_all(client, params_list):
    def call(index_params):
        index, params = index_params
        return client.once({"text": f"caller-{index}"}, params=params, expect=["text"], check=False)

    with ThreadPoolExecutor(len(params_list)) as executor:
        return list(executor.map(call, enumerate(params_list)))


def test_batched_calls_each_get_their_own_result(serve):
    server = batching(serve)
    with server.client() as client:
        results = call_all(client, [{}] * 16)
    bodies = [json.loads(r["text"]) for r in results]
    assert [b["text"] for b in bodies] == [f"caller-{i}" for i in range(16)]
    assert max(b["batch"] for b in bodies) > 1
    assert all(b["batch"] <= 8 for b in bodies)


def test_an_error_in_one_batch_item_reaches_only_its_caller(serve):
    server = batching(serve)
    with server.client() as client:
        results = call_all(client, [{"mode": "error"} if i == 3 else {} for i in range(8)])
    assert results[3].code == 10909 and "item refused;code=9" in results[3].message
    for index, result in enumerate(results):
        if index != 3:
            assert result.code == 0 and json.loads(result["text"])["text"] == f"caller-{index}"


def test_a_batch_that_returns_too_few_responses_fails_its_calls_only(serve):
    server = batching(serve)
    with server.client() as client:
        results = call_all(client, [{"mode": "short"}] + [{}] * 3)
        assert any(r.code == 10909 and "wrapperBatchExec returned" in r.message for r in results)
        assert client.once({"text": "after"}, expect=["text"]).code == 0


def test_a_hung_batch_times_out_every_call_in_it_and_the_worker_is_replaced(serve):
    server = batching(serve, exec_timeout_ms=1500)
    with server.client() as client:
        results = call_all(client, [{"mode": "hang"}] + [{}] * 3)
        hung = [r for r in results if r.code == 10102]
        assert hung and all(r.code in (0, 10102) for r in results)
        assert json.loads(client.once({"text": "after"}, expect=["text"])["text"])["text"] == "after"
