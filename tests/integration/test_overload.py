"""Under overload, serve what can be served: deadlines from every front, refusal at the door with
a retry hint, nothing run that nobody waits for, priorities. The ``patient`` wrapper sleeps as
asked and writes down every call it starts, so a test can tell what reached it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Server, free_port, wait_for

from aiges.client.values import loader_input
from aiges.protocol import oip_pb2
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData

XSF = "/utils.XsfCall/call"
INFER = "/inference.GRPCInferenceService/ModelInfer"
SERVICE_S = 0.2
"""What each call that keeps the worker busy sleeps."""


class Patient:
    """A server of the patient wrapper with one worker, its calls log and both ports."""

    def __init__(self, server: Server, log: Path, http: str) -> None:
        self.server = server
        self.log = log
        self.http = http
        self.channel = grpc.insecure_channel(server.address)

    def started(self) -> list[str]:
        """The labels of the calls the wrapper started, in order."""
        if not self.log.exists():
            return []
        return [line.split()[1] for line in self.log.read_text().splitlines() if line.startswith("start ")]

    def ended(self, label: str) -> bool:
        return self.log.exists() and f"end {label}\n" in self.log.read_text()

    def xsf(
        self, label: str, sleep: float = 0.0, *, timeout: float | None = None, metadata=(), param=None, **extra: str
    ) -> tuple[ResData, Any]:
        """A one-shot xsf call: the reply and the call (its trailing metadata)."""
        message = loader_input(
            state=LoaderInput.ONCE,
            inputs={"text": label.encode()},
            params={"sleep": str(sleep), "label": label, **extra},
            expect=["text"],
        )
        request = ReqData(
            op="AIIn", param={"SeqNo": "1", **(param or {})}, data=[DataMeta(data=message.SerializeToString())]
        )
        call = self.channel.unary_unary(XSF, ResData.SerializeToString, ResData.FromString)
        return call.with_call(request, timeout=timeout, metadata=metadata)

    def xsf_future(self, label: str, sleep: float = 0.0, *, timeout: float | None = None, metadata=()) -> grpc.Future:
        message = loader_input(
            state=LoaderInput.ONCE,
            inputs={"text": label.encode()},
            params={"sleep": str(sleep), "label": label},
            expect=["text"],
        )
        request = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
        call = self.channel.unary_unary(XSF, ResData.SerializeToString, ResData.FromString)
        return call.future(request, timeout=timeout, metadata=metadata)

    def oip(self, label: str, *, timeout: float | None = None, parameters: dict[str, int] | None = None):
        request = oip_pb2.ModelInferRequest(model_name="patient", id=label)
        request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(label.encode())
        request.parameters["label"].string_param = label
        for key, value in (parameters or {}).items():
            request.parameters[key].int64_param = value
        call = self.channel.unary_unary(
            INFER, oip_pb2.ModelInferRequest.SerializeToString, oip_pb2.ModelInferResponse.FromString
        )
        return call.with_call(request, timeout=timeout)

    def keep_busy(self, count: int) -> list[grpc.Future]:
        """``count`` calls of ``SERVICE_S`` each, queued behind one another on the one worker
        (with a deadline long enough for all of them)."""
        return [self.xsf_future(f"busy{i}", SERVICE_S, timeout=30) for i in range(count)]


def output_of(reply: ResData) -> LoaderOutput:
    return LoaderOutput.FromString(reply.data[0].data)


def hints(call: Any) -> dict[str, str]:
    return {k: v for k, v in call.trailing_metadata() or () if k in ("retry-after-ms", "grpc-retry-pushback-ms")}


def http_post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read()), dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


@pytest.fixture
def patient(serve, tmp_path) -> Callable[..., Patient]:
    def start(**options: Any) -> Patient:
        log = tmp_path / f"calls-{len(list(tmp_path.iterdir()))}.log"
        http_port = free_port()
        server = serve(
            "patient",
            wrapper_config={"calls_log": str(log)},
            extra=f'[http]\nlisten = "127.0.0.1:{http_port}"\n',
            **options,
        )
        return Patient(server, log, f"127.0.0.1:{http_port}")

    return start


def calibrated(patient: Patient) -> None:
    """One call of ``SERVICE_S``, so the server knows how long calls take."""
    reply, _ = patient.xsf("calibrate", SERVICE_S, timeout=30)
    assert output_of(reply).code == 0


def test_a_call_that_cannot_be_done_before_its_deadline_is_refused_at_once_on_every_front(patient):
    served = patient()
    calibrated(served)
    busy = served.keep_busy(4)  # about 0.8 s of work queued on the one worker
    wait_for(lambda: served.started()[-1:] == ["busy0"])
    refused: list[str] = []

    reply, call = served.xsf("xsf-deadline", timeout=0.3)  # the gRPC deadline
    assert reply.code == 10110 and "deadline" in reply.error_info, reply
    assert int(hints(call)["retry-after-ms"]) > 0 and hints(call)["grpc-retry-pushback-ms"]
    refused.append("xsf-deadline")

    reply, call = served.xsf("xsf-wait", param={"waitTime": "300"})  # the original's one-shot limit
    assert reply.code == 10110 and hints(call)
    refused.append("xsf-wait")

    for label, options in (("oip-deadline", {"timeout": 0.3}), ("oip-param", {"parameters": {"timeout": 300_000}})):
        with pytest.raises(grpc.RpcError) as caught:
            served.oip(label, **options)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "10110" in caught.value.details()
        assert int(hints(caught.value)["retry-after-ms"]) > 0
        refused.append(label)

    ase = {"payload": {"text": {"text": base64.b64encode(b"x").decode()}}, "parameter": {"patient": {"label": "ase"}}}
    for label, headers in (("ase-timeout", {"X-Request-Timeout": "0.3"}), ("ase-grpc", {"Grpc-Timeout": "300m"})):
        ase["parameter"]["patient"]["label"] = label
        status, body, reply_headers = http_post(f"http://{served.http}/v1/private/patient", ase, headers)
        assert status == 503 and body["header"]["code"] == 10110, body
        assert int(reply_headers["Retry-After"]) >= 1
        refused.append(label)

    rest = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    rest["parameters"] = {"timeout": 300_000, "label": "rest"}
    status, body, reply_headers = http_post(f"http://{served.http}/v2/models/patient/infer", rest, {})
    assert status == 503 and "10110" in body["error"] and "Retry-After" in reply_headers
    refused.append("rest")

    for future in busy:
        assert output_of(future.result(timeout=30)).code == 0
    assert not set(refused) & set(served.started()), served.started()  # none of them reached the wrapper
    assert served.server.status()["licences_used"] == 0


def test_a_call_with_time_for_it_is_served_under_the_same_load(patient):
    served = patient()
    calibrated(served)
    busy = served.keep_busy(2)
    reply, _ = served.xsf("roomy", timeout=5)
    assert output_of(reply).code == 0
    for future in busy:
        future.result(timeout=30)


def test_a_call_whose_deadline_passes_while_it_waits_never_runs(patient):
    served = patient()  # no call has been timed yet: admission cannot refuse it, the deadline can
    running = served.xsf_future("long", 1.0)
    wait_for(lambda: served.started() == ["long"])
    late = served.xsf_future("late", timeout=0.3)
    with pytest.raises(grpc.RpcError) as caught:
        late.result(timeout=10)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: served.server.status()["licences_used"] == 1)  # the waiting call's licence is free
    assert output_of(running.result(timeout=10)).code == 0
    after, _ = served.xsf("after")
    assert output_of(after).code == 0
    assert served.started() == ["long", "after"]


def test_a_caller_that_cancels_while_its_call_waits_takes_it_back(patient):
    served = patient()
    running = served.xsf_future("long", 1.0)
    wait_for(lambda: served.started() == ["long"])
    waiting = served.xsf_future("cancelled")
    wait_for(lambda: served.server.status()["licences_used"] == 2)
    waiting.cancel()
    wait_for(lambda: served.server.status()["licences_used"] == 1)
    running.result(timeout=10)
    after, _ = served.xsf("after")
    assert output_of(after).code == 0
    assert served.started() == ["long", "after"]


def test_a_higher_priority_runs_first_and_takes_a_lower_ones_licence(patient):
    served = patient(licences=3)
    running = served.xsf_future("long", 1.0)
    wait_for(lambda: served.started() == ["long"])
    low = [served.xsf_future(f"low{i}") for i in range(2)]
    wait_for(lambda: served.server.status()["licences_used"] == 3)
    urgent = served.xsf_future("urgent", metadata=(("x-request-priority", "5"),))
    refused = low[1].result(timeout=10)  # the newest of the least urgent gave its licence up
    assert refused.code == 10110 and "higher priority" in refused.error_info, refused
    for future in (running, urgent, low[0]):
        assert output_of(future.result(timeout=10)).code == 0
    assert served.started() == ["long", "urgent", "low0"]


def test_bad_deadlines_and_priorities_are_clear_errors(patient):
    served = patient()
    with pytest.raises(grpc.RpcError) as caught:
        served.oip("bad", parameters={"timeout": 0})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "10107" in caught.value.details()
    reply, _ = served.xsf("bad-priority", metadata=(("x-request-priority", "soon"),))
    assert output_of(reply).code == 10107 and "x-request-priority" in output_of(reply).err
    ase = {"payload": {"text": {"text": base64.b64encode(b"x").decode()}}}
    status, body, _ = http_post(f"http://{served.http}/v1/private/patient", ase, {"X-Request-Timeout": "-1"})
    assert status == 400 and body["header"]["code"] == 10107
    assert served.started() == []


def test_a_default_deadline_applies_where_the_caller_gives_none(patient):
    served = patient(fc_extra="deadline_ms = 300")
    calibrated(served)
    busy = served.keep_busy(4)
    wait_for(lambda: served.started()[-1:] == ["busy0"])
    reply, _ = served.xsf("defaulted")  # no deadline of its own: the service's applies
    assert reply.code == 10110
    for future in busy:
        assert output_of(future.result(timeout=30)).code == 0
    assert "defaulted" not in served.started()


def test_a_running_call_is_told_its_caller_went_away_and_a_cooperative_wrapper_stops(patient):
    served = patient()
    message = loader_input(
        state=LoaderInput.ONCE,
        inputs={"text": b"x"},
        params={"sleep": "30", "label": "coop", "mode": "cooperative"},
        expect=["text"],
    )
    request = ReqData(op="AIIn", param={"SeqNo": "1"}, data=[DataMeta(data=message.SerializeToString())])
    call = served.channel.unary_unary(XSF, ResData.SerializeToString, ResData.FromString).future(request)
    wait_for(lambda: "coop" in served.started(), timeout=30)
    call.cancel()  # no deadline: only the caller going tells the wrapper
    wait_for(lambda: served.log.exists() and "stopped coop none" in served.log.read_text(), timeout=10)
    wait_for(lambda: served.server.status()["licences_used"] == 0)
    after, _ = served.xsf("after")
    assert output_of(after).code == 0


def test_a_cooperative_wrapper_sees_its_deadline_pass(patient):
    served = patient()
    with pytest.raises(grpc.RpcError) as caught:
        served.xsf("late", 30.0, timeout=0.5, mode="cooperative")
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: served.log.exists() and "stopped late" in served.log.read_text(), timeout=10)
    stopped = next(line for line in served.log.read_text().splitlines() if line.startswith("stopped late"))
    assert float(stopped.split()[2]) <= 0  # it stopped once the deadline had passed


def test_a_function_style_wrapper_learns_of_it_through_the_same_call(serve, tmp_path):
    note = tmp_path / "note.txt"
    server = serve("functional")
    with server.client(timeout=0.5) as client, pytest.raises(grpc.RpcError):
        client.once({"text": b"x"}, params={"mode": "wait_cancel", "note": str(note)}, expect=["text"])
    wait_for(lambda: note.exists() and note.read_text() == "cancelled=True\n", timeout=10)
