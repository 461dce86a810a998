"""BalancedClient against real servers registered in a real etcd: the retry rule when a server
dies during a call, and a restarted server getting calls again."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal

import grpc
import pytest
from conftest import wait_for

from aiges.client import BalancedClient, EtcdProviders
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub


def registered(etcd: str) -> str:
    return f'[registry]\nbackend = "etcd"\nendpoints = "{etcd}"\nttl = 3\n'


def status(server) -> dict:
    with grpc.insecure_channel(server.address) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=json.dumps({"cmd": "status"})), timeout=5)
    return json.loads(reply.body)


def inflight(server) -> int:
    return status(server)["inflight"]


def kill_the_busy_one(servers, call: concurrent.futures.Future):
    """SIGKILL whichever server is running the call; returns it."""
    busy = wait_for(lambda: next((s for s in servers if s.process.poll() is None and inflight(s)), None))
    assert not call.done()
    os.kill(busy.process.pid, signal.SIGKILL)
    busy.process.wait()
    return busy


def test_a_call_whose_server_dies_is_retried_only_when_idempotent(serve, etcd):
    servers = [serve("faulty", extra=registered(etcd)) for _ in range(3)]
    providers = EtcdProviders(etcd, service="faulty", version="v1")
    wait_for(lambda: len(providers.snapshot()) == 3)
    slow = {"mode": "sleep", "seconds": "2"}
    with BalancedClient(providers) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        # it may have run: not idempotent, so the loss is the caller's to see
        call = pool.submit(client.once, {"text": b"x"}, params=slow, expect=["text"])
        first = kill_the_busy_one(servers, call)
        with pytest.raises(grpc.RpcError) as failure:
            call.result(30)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        # idempotent: run again on another server
        call = pool.submit(client.once, {"text": b"y"}, params=slow, expect=["text"], idempotent=True)
        second = kill_the_busy_one([s for s in servers if s is not first], call)
        assert call.result(30)["text"] == b"y"
        assert first is not second
    providers.close()


def test_a_restarted_server_gets_calls_again(serve, etcd):
    first = serve("faulty", extra=registered(etcd))
    second = serve("faulty", extra=registered(etcd))
    providers = EtcdProviders(etcd, service="faulty", version="v1")
    wait_for(lambda: len(providers.snapshot()) == 2)

    def answered_by(client) -> int:
        """The pid of the worker that ran a call."""
        reply = client.once({"text": b"x"}, params={"mode": "env"}, expect=["text"], idempotent=True)
        return json.loads(reply["text"])["pid"]

    with BalancedClient(providers) as client:
        for _ in range(10):
            answered_by(client)
        first.process.kill()
        first.process.wait()
        survivors = set(status(second)["worker_pids"])
        # every call goes to the other; the dead one is marked down at its first failure, or as
        # soon as gRPC fails to reconnect its lost connection (when no call was drawn to it)
        assert {answered_by(client) for _ in range(10)} <= survivors
        wait_for(lambda: client.balancer.is_down(first.address), timeout=15)
        first.start()
        restarted = set(status(first)["worker_pids"])
        wait_for(lambda: answered_by(client) in restarted, timeout=30, interval=0.05)
        assert not client.balancer.is_down(first.address)
    providers.close()
