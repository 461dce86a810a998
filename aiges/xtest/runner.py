"""The load generator: one-shot calls or streamed sessions, closed- or open-loop.

Closed loop: ``concurrency`` callers, each starting its next request when the last one ends
(started over ``ramp_ms``). Open loop (``rate``): requests start on a fixed schedule whatever the
server does, and each one's latency counts from its scheduled start, so a slow server cannot hide
its queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
from hdrh.histogram import HdrHistogram

from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session
from aiges.protocol.xsf_pb2_grpc import XsfCallStub
from aiges.xtest.config import XtestConfig

MAX_US = 3_600_000_000
END = LoaderOutput.END
ENDED_OK = 10101


class Recorder:
    """Latencies (HDR histograms, microseconds) and outcomes."""

    def __init__(self) -> None:
        self.latency = HdrHistogram(1, MAX_US, 3)
        self.first = HdrHistogram(1, MAX_US, 3)
        self.successes = 0
        self.errors: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.finished = self.started

    @property
    def requests(self) -> int:
        return self.successes + sum(self.errors.values())

    def record(self, code: str | None, latency_s: float, first_s: float | None = None) -> None:
        self.latency.record_value(min(max(int(latency_s * 1e6), 1), MAX_US))
        if first_s is not None:
            self.first.record_value(min(max(int(first_s * 1e6), 1), MAX_US))
        if code is None:
            self.successes += 1
        else:
            self.errors[code] += 1
        self.finished = time.perf_counter()


class Targets:
    """Where each request goes: round-robin over addresses, or the registry's best provider."""

    def __init__(self, addresses: list[str], providers=None) -> None:
        self.addresses = addresses
        self.providers = providers
        self._next = itertools.cycle(addresses) if addresses else None
        self._stubs: dict[str, XsfCallStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def pick(self) -> str:
        if self.providers is not None:
            address = self.providers.best()
            if address is None:
                raise RuntimeError("the registry lists no SERVING provider")
            return address
        return next(self._next)

    def stub(self, address: str) -> XsfCallStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=[
                ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
            self._channels.append(channel)
            stub = self._stubs[address] = XsfCallStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


class Workload:
    def __init__(self, config: XtestConfig, targets: Targets, recorder: Recorder,
                 on_output: Callable[[int, LoaderOutput], None] | None = None) -> None:
        self.config = config
        self.targets = targets
        self.recorder = recorder
        self.on_output = on_output
        self.timeout = config.timeout_ms / 1000 + 5
        self.wait = str(config.timeout_ms)
        self.expect = [MetaDesc(name=e.name, dataType=e.type, attribute=e.attributes) for e in config.expect]
        self._once_cache: dict[int, ReqData] = {}

    def _payload(self, spec, data: bytes, status: int, seq: int) -> Payload:
        attributes = dict(spec.attributes)
        attributes.setdefault("status", str(status))
        attributes.setdefault("seq", str(seq))
        return Payload(meta=MetaDesc(name=spec.name, dataType=spec.type, attribute=attributes), data=data)

    def once_request(self, index: int) -> ReqData:
        key = index % max((i.variants for i in self.config.inputs), default=1)
        request = self._once_cache.get(key)
        if request is None:
            message = LoaderInput(
                serviceId=self.config.service_id, state=LoaderInput.ONCE, headers=self.config.headers,
                params=self.config.params, expect=self.expect,
                pl=[self._payload(spec, spec.data(key), 3, 0) for spec in self.config.inputs],
            )
            request = ReqData(op="AIIn", param={"SeqNo": "1", "waitTime": self.wait},
                              data=[DataMeta(data=message.SerializeToString())])
            self._once_cache[key] = request
        return request

    async def run_one(self, index: int, scheduled: float | None = None) -> None:
        started = scheduled if scheduled is not None else time.perf_counter()
        try:
            if self.config.session:
                code, first = await self._session(index, started)
            else:
                code, first = await self._once(index), None
        except grpc.aio.AioRpcError as exc:
            code, first = f"grpc:{exc.code().name}", None
        except Exception as exc:  # noqa: BLE001 - counted as an error of this request, not a crash
            code, first = f"client:{type(exc).__name__}: {exc}", None
        self.recorder.record(code, time.perf_counter() - started, first)

    def _check(self, reply: ResData, index: int) -> tuple[str | None, LoaderOutput | None]:
        if reply.code:
            return str(reply.code), None
        output = LoaderOutput.FromString(reply.data[0].data) if reply.data else None
        if output is not None and output.code and output.code != ENDED_OK:
            return str(output.code), output
        if output is not None and self.on_output is not None and output.pl:
            self.on_output(index, output)
        return None, output

    async def _once(self, index: int) -> str | None:
        stub = self.targets.stub(self.targets.pick())
        reply = await stub.call(self.once_request(index), timeout=self.timeout)
        return self._check(reply, index)[0]

    async def _session(self, index: int, started: float) -> tuple[str | None, float | None]:
        stub = self.targets.stub(self.targets.pick())
        opening = LoaderInput(serviceId=self.config.service_id, state=LoaderInput.STREAM, headers=self.config.headers,
                              params=self.config.params, expect=self.expect)
        reply = await stub.call(ReqData(op="AIIn", param={"SeqNo": "1", "waitTime": self.wait},
                                        data=[DataMeta(data=opening.SerializeToString())]), timeout=self.timeout)
        handle = reply.s.h
        code, output = self._check(reply, index)
        if code is not None:
            return code, None
        first = None
        frames = self._frames(index)
        interval = (self.config.inputs[0].interval_ms / 1000) if self.config.inputs else 0
        ended = False
        for seq, frame in enumerate(frames, start=1):
            if seq > 1 and interval:
                await asyncio.sleep(max(started + interval * (seq - 1) - time.perf_counter(), 0))
            message = LoaderInput(serviceId=self.config.service_id, state=LoaderInput.STREAM, sync_id=seq, pl=frame)
            reply = await stub.call(ReqData(op="AIIn", s=Session(h=handle), param={"waitTime": self.wait},
                                            data=[DataMeta(data=message.SerializeToString())]), timeout=self.timeout)
            code, output = self._check(reply, index)
            if code is not None:
                return code, first
            if output is not None and output.pl and first is None:
                first = time.perf_counter() - started
            if output is not None and (output.status == END or output.code == ENDED_OK):
                ended = True
                break
        while not ended:
            reply = await stub.call(ReqData(op="AIOut", s=Session(h=handle), param={"waitTime": self.wait},
                                            data=[DataMeta(data=LoaderInput().SerializeToString())]),
                                    timeout=self.timeout)
            code, output = self._check(reply, index)
            if code is not None:
                return code, first
            if output is not None and output.pl and first is None:
                first = time.perf_counter() - started
            ended = output is None or output.status == END or output.code == ENDED_OK
        await stub.call(ReqData(op="AIExcp", s=Session(h=handle)), timeout=self.timeout)
        return None, first

    def _frames(self, index: int) -> list[list[Payload]]:
        """Frame k holds slice k of every input (whole files when slicing is off); the last is END."""
        pieces = []
        for spec in self.config.inputs:
            data = spec.data(index)
            step = spec.slice_size if spec.slice_on else max(len(data), 1)
            pieces.append([data[i : i + step] for i in range(0, max(len(data), 1), step)])
        count = max((len(p) for p in pieces), default=1)
        frames = []
        for k in range(count):
            status = 2 if k == count - 1 else (0 if k == 0 else 1)
            frames.append([self._payload(spec, p[k], status, k + 1)
                           for spec, p in zip(self.config.inputs, pieces, strict=True) if k < len(p)])
        return frames


async def closed_loop(workload: Workload, config: XtestConfig, stop_at: float | None) -> None:
    counter = itertools.count()

    async def caller(number: int) -> None:
        if config.ramp_ms:
            await asyncio.sleep(config.ramp_ms / 1000 * number / config.concurrency)
        while True:
            if stop_at is not None and time.perf_counter() >= stop_at:
                return
            index = next(counter)
            if stop_at is None and index >= config.requests:
                return
            await workload.run_one(index)

    await asyncio.gather(*(caller(i) for i in range(config.concurrency)))


async def open_loop(workload: Workload, config: XtestConfig, stop_at: float | None) -> None:
    period = 1 / config.rate
    start = time.perf_counter()
    tasks: set[asyncio.Task] = set()
    for index in itertools.count():
        scheduled = start + index * period
        if (stop_at is not None and scheduled >= stop_at) or (stop_at is None and index >= config.requests):
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(workload.run_one(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def progress_bar(recorder: Recorder, total: int | None, duration_s: float | None) -> None:
    if not sys.stderr.isatty():
        return
    while True:
        await asyncio.sleep(0.2)
        done = recorder.requests
        elapsed = time.perf_counter() - recorder.started
        fraction = min(done / total, 1.0) if total else min(elapsed / (duration_s or 1), 1.0)
        bar = "#" * int(fraction * 30)
        errors = sum(recorder.errors.values())
        sys.stderr.write(f"\r[{bar:<30}] {fraction:4.0%} {done} requests  {done / max(elapsed, 1e-9):8.1f}/s  "
                         f"errors {errors}")
        sys.stderr.flush()


async def run_xtest(config: XtestConfig, targets: Targets, on_output=None) -> Recorder:
    recorder = Recorder()
    workload = Workload(config, targets, recorder, on_output)
    stop_at = time.perf_counter() + config.duration_s if config.duration_s else None
    bar = asyncio.create_task(progress_bar(recorder, None if config.duration_s else config.requests, config.duration_s))
    try:
        if config.rate:
            await open_loop(workload, config, stop_at)
        else:
            await closed_loop(workload, config, stop_at)
    finally:
        bar.cancel()
        await targets.close()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    return recorder


def write_output(mode: int, path: Path) -> Callable[[int, LoaderOutput], None] | None:
    """The [downstream] output modes: 0 one file, 1 a file per result, 2 stdout, -1 none."""
    if mode == 2:
        def to_stdout(index: int, output: LoaderOutput) -> None:
            for payload in output.pl:
                text = (payload.data.decode("utf-8", "replace") if payload.meta.dataType == 0
                        else f"<{len(payload.data)} bytes>")
                print(f"[{index}] {payload.meta.name}: {text}")
        return to_stdout
    if mode == 1:
        path.mkdir(parents=True, exist_ok=True)

        def to_files(index: int, output: LoaderOutput) -> None:
            for number, payload in enumerate(output.pl):
                (path / f"{index}-{payload.meta.name}-{number}").write_bytes(payload.data)
        return to_files
    if mode == 0:
        path.parent.mkdir(parents=True, exist_ok=True)

        def to_one_file(index: int, output: LoaderOutput) -> None:
            with path.open("ab") as file:
                for payload in output.pl:
                    file.write(payload.data + b"\n")
        return to_one_file
    return None


def percentiles(histogram: HdrHistogram) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
    value = histogram.get_value_at_percentile
    return {
        "p50": value(50) / 1000, "p90": value(90) / 1000, "p99": value(99) / 1000,
        "p999": value(99.9) / 1000, "max": histogram.get_max_value() / 1000,
    }


def report(recorder: Recorder, config: XtestConfig) -> dict:
    duration = max(recorder.finished - recorder.started, 1e-9)
    result = {
        "requests": recorder.requests,
        "successes": recorder.successes,
        "errors": sum(recorder.errors.values()),
        "errors_by_code": dict(sorted(recorder.errors.items())),
        "duration_s": round(duration, 3),
        "throughput_rps": round(recorder.requests / duration, 2),
        "latency_ms": {k: round(v, 3) for k, v in percentiles(recorder.latency).items()},
        "mode": ("session" if config.session else "once") + (f", open loop at {config.rate}/s" if config.rate
                                                             else f", closed loop x{config.concurrency}"),
    }
    if config.session:
        result["first_result_ms"] = {k: round(v, 3) for k, v in percentiles(recorder.first).items()}
    return result
