"""The load generator: one-shot calls or streamed sessions, closed- or open-loop.

Closed loop: ``concurrency`` callers, each starting its next request when the last one ends
(started over ``ramp_ms``). Open loop (``rate``): requests start on a fixed schedule whatever the
server does, and each one's latency counts from its scheduled start, so a slow server cannot hide
its queueing (no coordinated omission).

Against the registry (``--etcd``) each call goes where ``aiges.client.balancer`` says, and is
tried on another provider where its retry rule allows (``--idempotent`` lets one-shot calls
whose connection was lost be tried again). The report then holds a per-second timeline
(successes, errors by code, calls per host), the calls per host, the retries, and the changes
the client saw; ``--calls`` writes every call and change as JSON lines while the run goes.
SIGINT or SIGTERM stops starting calls, lets the running ones finish, and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from hdrh.histogram import HdrHistogram

from aiges.client.balancer import (
    CHANNEL_OPTIONS,
    MAX_ATTEMPTS,
    Balancer,
    Outcome,
    classify_code,
    classify_status,
    may_retry,
)
from aiges.client.credentials import SigningKey, TlsOptions, open_aio_channel
from aiges.client.registry import EtcdProviders, NoProviderError
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput, MetaDesc, Payload
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, ResData, Session
from aiges.protocol.xsf_pb2_grpc import XsfCallStub
from aiges.xtest.figures import CallObserver
from aiges.xtest.plan import InputSpec, XtestConfig

MAX_US = 3_600_000_000
END = LoaderOutput.END
ENDED_OK = 10101


@dataclass
class CallTrace:
    """Where one call went: the providers tried, the last one, and the attempts that failed
    (address, when sent, code) before the last."""

    tried: list[str] = field(default_factory=list)
    host: str | None = None
    sent: float | None = None
    tries: list[tuple[str, float, str]] = field(default_factory=list)
    served: str | None = None
    """The host that answered, from the reply's PeerAddr, when it is not ``host`` (a gateway)."""


class Recorder:
    """Latencies (HDR histograms, microseconds) and outcomes; with ``calls_path``, every call
    (when it was scheduled, how long it took, its code, the host that answered and the attempts
    that failed before) and every change the client saw in the registry or marked on a provider,
    as JSON lines written while the run goes (flushed twice a second). Each call is also handed
    to the ``observers`` (the live view, the Prometheus figures)."""

    def __init__(self, calls_path: Path | None = None) -> None:
        self.latency = HdrHistogram(1, MAX_US, 3)
        self.first = HdrHistogram(1, MAX_US, 3)
        self.successes = 0
        self.errors: Counter[str] = Counter()
        self.attempt_errors: Counter[str] = Counter()
        self.retried = 0
        self.hosts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.started_monotonic = time.monotonic()
        self.finished = self.started
        self.calls: list[tuple[float, float, str | None, str | None]] = []
        """(start offset s, latency s, code or None, host) per call."""
        self.events: list[dict[str, Any]] = []
        self.observers: list[CallObserver] = []
        self._lock = threading.Lock()
        self._log = calls_path.open("w") if calls_path is not None else None  # noqa: SIM115 - closed in close()
        self._write({"start_monotonic": round(self.started_monotonic, 6), "start_unix": round(time.time(), 6)})

    @property
    def requests(self) -> int:
        return self.successes + sum(self.errors.values())

    def offset(self, perf: float) -> float:
        return perf - self.started

    def record(
        self,
        code: str | None,
        latency_s: float,
        first_s: float | None = None,
        *,
        started: float | None = None,
        host: str | None = None,
        tries: list[tuple[str, float, str]] | None = None,
        kind: str = "once",
        sent: float | None = None,
        served: str | None = None,
    ) -> None:
        self.latency.record_value(min(max(int(latency_s * 1e6), 1), MAX_US))
        if first_s is not None:
            self.first.record_value(min(max(int(first_s * 1e6), 1), MAX_US))
        if code is None:
            self.successes += 1
            if host is not None:
                self.hosts[host] += 1
        else:
            self.errors[code] += 1
        if tries:
            self.retried += 1
            for _, _, failed in tries:
                self.attempt_errors[failed] += 1
        self.finished = time.perf_counter()
        for observer in self.observers:
            observer.observe(code, latency_s, first_s, len(tries) if tries else 0)
        at = self.offset(started if started is not None else self.finished - latency_s)
        self.calls.append((at, latency_s, code, host))
        if self._log is not None:
            line: dict[str, Any] = {
                "t": round(at, 4),
                "ms": round(latency_s * 1000, 2),
                "code": code,
                "host": host,
                "kind": kind,
            }
            if tries:
                line["tries"] = [[address, round(self.offset(when), 4), failed] for address, when, failed in tries]
            if sent is not None and tries:
                line["sent"] = round(self.offset(sent), 4)  # the last attempt, when others came first
            if served is not None:
                line["served"] = served  # behind a gateway: the host that answered
            self._write(line)

    def event(self, kind: str, address: str, detail: str = "") -> None:
        """A registry change or a provider marked down or up (from any thread)."""
        entry = {"t": round(self.offset(time.perf_counter()), 4), "event": kind, "address": address}
        if detail:
            entry["detail"] = detail
        with self._lock:
            self.events.append(entry)
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        if self._log is not None:
            with self._lock:
                self._log.write(json.dumps(entry) + "\n")

    def flush(self) -> None:
        if self._log is not None:
            with self._lock:
                self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            with self._lock:
                self._log.close()
                self._log = None


class Targets:
    """Where each request goes: round-robin over fixed addresses, or, with the registry's
    providers, the choice and retry rule of ``aiges.client.balancer`` (the same as
    ``BalancedClient``), each provider's channel followed with gRPC's connectivity state."""

    def __init__(
        self,
        addresses: list[str],
        providers: EtcdProviders | None = None,
        *,
        idempotent: bool = False,
        tls: TlsOptions | None = None,
        signing: SigningKey | None = None,
        retry_refused: bool = False,
        service: str = "",
    ) -> None:
        """``tls`` and ``signing``: as for ``Client`` (a server with [tls] or [auth] mode = hmac).
        ``retry_refused``: with fixed addresses (a gateway), calls refused (10110) or that never
        reached a server are sent again, as the balanced client does; ``service``: sent as the
        ``aiges-service`` header, so a gateway in front of many services routes it."""
        self.addresses = addresses
        self.retry_refused = retry_refused
        self.metadata: tuple[tuple[str, str], ...] = (("aiges-service", service),) if service else ()
        self.once_metadata = self.metadata + ((("aiges-idempotent", "1"),) if idempotent else ())
        self.tls = tls
        self.signing = signing
        self.providers = providers
        self.idempotent = idempotent
        self.balancer = Balancer(providers) if providers is not None else None
        self._next = itertools.cycle(addresses) if addresses else None
        self._stubs: dict[str, XsfCallStub] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def balanced(self) -> bool:
        return self.balancer is not None

    def attach(self, recorder: Recorder) -> None:
        """Send the registry's changes and the balancer's marks to ``recorder``."""
        providers = self.providers
        if self.balancer is None or providers is None:
            return
        self.balancer.on_event = recorder.event

        def changed(kind: str, address: str, value: Mapping[str, Any] | None) -> None:
            if kind == "changed":  # only health moves are worth a line, not each licence step
                health = (value or {}).get("health", "")
                if self._health.get(address) == health:
                    return
                kind = f"health {health}"
            if value is not None:
                self._health[address] = value.get("health", "")
            recorder.event(kind, address)

        self._health: dict[str, str] = {a: e.value.get("health", "") for a, e in providers.entries().items()}
        providers.on_change = changed

    def pick(self, exclude: Iterable[str] = ()) -> str:
        if self.balancer is not None:
            address = self.balancer.choose(exclude)
            if address is None:
                raise NoProviderError(
                    "the registry lists no SERVING provider" + (f" outside {sorted(exclude)}" if exclude else "")
                )
            return address
        assert self._next is not None
        return next(self._next)

    def begin(self, address: str) -> float:
        return self.balancer.begin(address) if self.balancer is not None else 0.0

    def end(self, address: str, started: float, outcome: Outcome) -> None:
        if self.balancer is not None:
            self.balancer.end(address, started, outcome)

    def stub(self, address: str) -> XsfCallStub:
        stub = self._stubs.get(address)
        if stub is None:
            options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
            if self.balancer is not None:
                options += CHANNEL_OPTIONS
            channel = open_aio_channel(address, tls=self.tls, signing=self.signing, options=options)
            self._channels.append(channel)
            stub = self._stubs[address] = XsfCallStub(channel)
            if self.balancer is not None:
                self._watchers.append(asyncio.create_task(self._follow(address, channel)))
        return stub

    async def _follow(self, address: str, channel: grpc.aio.Channel) -> None:
        """gRPC's view of the connection: TRANSIENT_FAILURE marks the provider down, READY up.
        While the registry lists it, the channel is kept connecting (gRPC's own back-off)."""
        connectivity = grpc.ChannelConnectivity
        balancer = self.balancer
        providers = self.providers
        assert balancer is not None and providers is not None
        state = channel.get_state(try_to_connect=False)
        while True:
            if state == connectivity.TRANSIENT_FAILURE:
                balancer.mark_down(address, "connection failed")
            elif state == connectivity.READY:
                balancer.mark_up(address, "connected")
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=address in providers.entries())

    async def close(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        for channel in self._channels:
            await channel.close()


class Workload:
    def __init__(
        self,
        config: XtestConfig,
        targets: Targets,
        recorder: Recorder,
        on_output: Callable[[int, LoaderOutput], None] | None = None,
    ) -> None:
        self.config = config
        self.targets = targets
        self.recorder = recorder
        self.on_output = on_output
        self.timeout = config.timeout_ms / 1000 + 5
        self.wait = str(config.timeout_ms)
        self.expect = [MetaDesc(name=e.name, dataType=cast(Any, e.type), attribute=e.attributes) for e in config.expect]
        self._once_cache: dict[int, ReqData] = {}

    def _payload(self, spec: InputSpec, data: bytes, status: int, seq: int) -> Payload:
        attributes = dict(spec.attributes)
        attributes.setdefault("status", str(status))
        attributes.setdefault("seq", str(seq))
        return Payload(meta=MetaDesc(name=spec.name, dataType=cast(Any, spec.type), attribute=attributes), data=data)

    def once_request(self, index: int) -> ReqData:
        key = index % max((i.variants for i in self.config.inputs), default=1)
        request = self._once_cache.get(key)
        if request is None:
            message = LoaderInput(
                serviceId=self.config.service_id,
                state=LoaderInput.ONCE,
                headers=self.config.headers,
                params=self.config.params,
                expect=self.expect,
                pl=[self._payload(spec, spec.data(key), 3, 0) for spec in self.config.inputs],
            )
            request = ReqData(
                op="AIIn",
                param={"SeqNo": "1", "waitTime": self.wait},
                data=[DataMeta(data=message.SerializeToString())],
            )
            self._once_cache[key] = request
        return request

    async def run_one(self, index: int, scheduled: float | None = None) -> None:
        started = scheduled if scheduled is not None else time.perf_counter()
        call = CallTrace()
        try:
            if self.config.session:
                code, first = await self._session(index, started, call)
            else:
                code, first = await self._once(index, call), None
        except grpc.aio.AioRpcError as exc:
            code, first = f"grpc:{exc.code().name}", None
        except NoProviderError:
            code, first = "client:no-provider", None
        except Exception as exc:  # noqa: BLE001 - counted as an error of this request, not a crash
            code, first = f"client:{type(exc).__name__}: {exc}", None
        self.recorder.record(
            code,
            time.perf_counter() - started,
            first,
            started=started,
            host=call.host,
            tries=call.tries,
            kind="session" if self.config.session else "once",
            sent=call.sent,
            served=call.served,
        )

    def _check(self, reply: ResData, index: int) -> tuple[str | None, LoaderOutput | None]:
        if reply.code:
            return str(reply.code), None
        output = LoaderOutput.FromString(reply.data[0].data) if reply.data else None
        if output is not None and output.code and output.code != ENDED_OK:
            return str(output.code), output
        if output is not None and self.on_output is not None and output.pl:
            self.on_output(index, output)
        return None, output

    async def _attempt(
        self,
        request: ReqData,
        call: CallTrace,
        deadline: float,
        *,
        retry_lost: bool,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> tuple[XsfCallStub, ResData]:
        """Send a first frame to the chosen provider, and to others while the retry rule allows.
        Returns the stub that answered and its reply (which may carry an error code)."""
        targets = self.targets
        last: grpc.aio.AioRpcError | tuple[XsfCallStub, ResData] | None = None
        while True:
            try:
                address = targets.pick(exclude=call.tried)
            except NoProviderError:
                if last is None:
                    raise
                break  # nowhere else to go: the last failure stands
            call.tried.append(address)
            call.host = address
            stub = targets.stub(address)
            sent = call.sent = time.perf_counter()
            began = targets.begin(address)
            try:
                reply = await stub.call(request, timeout=max(deadline - time.perf_counter(), 0.001), metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                outcome = classify_status(exc.code(), exc.details())
                targets.end(address, began, outcome)
                last = exc
                retry = (targets.balanced and may_retry(outcome, retry_lost)) or (
                    targets.retry_refused and outcome is Outcome.UNREACHED
                )
                if not (retry and len(call.tried) < MAX_ATTEMPTS and time.perf_counter() < deadline):
                    break
                call.tries.append((address, sent, f"grpc:{exc.code().name}"))
                continue
            code = reply.code or self._output_code(reply)
            outcome = classify_code(code)
            targets.end(address, began, outcome)
            last = (stub, reply)
            served = reply.s.sess.get("PeerAddr")
            call.served = served if served and served != address else None
            if not (
                (targets.balanced or targets.retry_refused)
                and outcome is Outcome.REFUSED
                and len(call.tried) < MAX_ATTEMPTS
                and time.perf_counter() < deadline
            ):
                break
            call.tries.append((address, sent, str(code)))
        if call.tries and call.tries[-1][0] == call.host:  # the last failure is the answer, not a retry
            call.tries.pop()
        if isinstance(last, grpc.aio.AioRpcError):
            raise last
        return last

    @staticmethod
    def _output_code(reply: ResData) -> int:
        if not reply.data:
            return 0
        code = LoaderOutput.FromString(reply.data[0].data).code
        return 0 if code == ENDED_OK else code

    async def _once(self, index: int, call: CallTrace) -> str | None:
        deadline = time.perf_counter() + self.timeout
        _, reply = await self._attempt(
            self.once_request(index),
            call,
            deadline,
            retry_lost=self.targets.idempotent,
            metadata=self.targets.once_metadata,
        )
        return self._check(reply, index)[0]

    async def _session(self, index: int, started: float, call: CallTrace) -> tuple[str | None, float | None]:
        opening = LoaderInput(
            serviceId=self.config.service_id,
            state=LoaderInput.STREAM,
            headers=self.config.headers,
            params=self.config.params,
            expect=self.expect,
        )
        # only the opening moves to another provider, when it was refused or never arrived; the
        # session's frames stay on the provider that opened it
        request = ReqData(
            op="AIIn", param={"SeqNo": "1", "waitTime": self.wait}, data=[DataMeta(data=opening.SerializeToString())]
        )
        stub, reply = await self._attempt(
            request, call, time.perf_counter() + self.timeout, retry_lost=False, metadata=self.targets.metadata
        )
        code, output = self._check(reply, index)
        if code is not None:
            return code, None
        address = call.host
        assert address is not None  # the opening reached a provider
        began = self.targets.begin(address)  # an open session counts as outstanding on its provider
        try:
            code, first = await self._frames_and_results(index, started, stub, reply.s.h)
        except grpc.aio.AioRpcError as exc:
            self.targets.end(address, began, classify_status(exc.code(), exc.details()))
            raise
        self.targets.end(address, began, Outcome.OK if code is None else classify_code(int(code)))
        return code, first

    async def _frames_and_results(
        self, index: int, started: float, stub: XsfCallStub, handle: str
    ) -> tuple[str | None, float | None]:
        first = None
        frames = self._frames(index)
        interval = (self.config.inputs[0].interval_ms / 1000) if self.config.inputs else 0
        # the handle names the session's host: a gateway routes its later calls by it
        metadata = (*self.targets.metadata, ("aiges-handle", handle))
        ended = False
        for seq, frame in enumerate(frames, start=1):
            if seq > 1 and interval:
                await asyncio.sleep(max(started + interval * (seq - 1) - time.perf_counter(), 0))
            message = LoaderInput(serviceId=self.config.service_id, state=LoaderInput.STREAM, sync_id=seq, pl=frame)
            reply = await stub.call(
                ReqData(
                    op="AIIn",
                    s=Session(h=handle),
                    param={"waitTime": self.wait},
                    data=[DataMeta(data=message.SerializeToString())],
                ),
                timeout=self.timeout,
                metadata=metadata,
            )
            code, output = self._check(reply, index)
            if code is not None:
                return code, first
            if output is not None and output.pl and first is None:
                first = time.perf_counter() - started
            if output is not None and (output.status == END or output.code == ENDED_OK):
                ended = True
                break
        while not ended:
            reply = await stub.call(
                ReqData(
                    op="AIOut",
                    s=Session(h=handle),
                    param={"waitTime": self.wait},
                    data=[DataMeta(data=LoaderInput().SerializeToString())],
                ),
                timeout=self.timeout,
                metadata=metadata,
            )
            code, output = self._check(reply, index)
            if code is not None:
                return code, first
            if output is not None and output.pl and first is None:
                first = time.perf_counter() - started
            ended = output is None or output.status == END or output.code == ENDED_OK
        await stub.call(ReqData(op="AIExcp", s=Session(h=handle)), timeout=self.timeout, metadata=metadata)
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
            frames.append(
                [
                    self._payload(spec, p[k], status, k + 1)
                    for spec, p in zip(self.config.inputs, pieces, strict=True)
                    if k < len(p)
                ]
            )
        return frames


async def closed_loop(
    workload: Workload, config: XtestConfig, stop_at: float | None, stopped: asyncio.Event | None = None
) -> None:
    counter = itertools.count()
    stopped = stopped or asyncio.Event()

    async def caller(number: int) -> None:
        if config.ramp_ms:
            await asyncio.sleep(config.ramp_ms / 1000 * number / config.concurrency)
        while True:
            if stopped.is_set() or (stop_at is not None and time.perf_counter() >= stop_at):
                return
            index = next(counter)
            if stop_at is None and index >= config.requests:
                return
            await workload.run_one(index)

    await asyncio.gather(*(caller(i) for i in range(config.concurrency)))


async def open_loop(
    workload: Workload, config: XtestConfig, stop_at: float | None, stopped: asyncio.Event | None = None
) -> None:
    assert config.rate is not None
    period = 1 / config.rate
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    stopped = stopped or asyncio.Event()
    for index in itertools.count():
        scheduled = start + index * period
        if (stop_at is not None and scheduled >= stop_at) or (stop_at is None and index >= config.requests):
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopped.wait(), delay)
        if stopped.is_set():
            break
        task = asyncio.create_task(workload.run_one(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def flush_often(recorder: Recorder) -> None:
    while True:
        await asyncio.sleep(0.5)
        recorder.flush()


async def run_xtest(
    config: XtestConfig,
    targets: Targets,
    on_output: Callable[[int, LoaderOutput], None] | None = None,
    calls_path: Path | None = None,
    *,
    observers: Sequence[CallObserver] = (),
    live: Callable[[Recorder], Coroutine[Any, Any, None]] | None = None,
) -> Recorder:
    """Run the load; each call goes to ``observers`` too, and ``live(recorder)`` (the live
    view) runs alongside until the load ends."""
    recorder = Recorder(calls_path)
    recorder.observers.extend(observers)
    targets.attach(recorder)
    workload = Workload(config, targets, recorder, on_output)
    stop_at = time.perf_counter() + config.duration_s if config.duration_s else None
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    for sig in signals:
        loop.add_signal_handler(sig, stopped.set)
    shown = asyncio.create_task(live(recorder)) if live is not None else None
    flusher = asyncio.create_task(flush_often(recorder))
    try:
        if config.rate:
            await open_loop(workload, config, stop_at, stopped)
        else:
            await closed_loop(workload, config, stop_at, stopped)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        flusher.cancel()
        if shown is not None:
            shown.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shown
        await targets.close()
        recorder.close()
    return recorder


def write_output(mode: int, path: Path) -> Callable[[int, LoaderOutput], None] | None:
    """The [downstream] output modes: 0 one file, 1 a file per result, 2 stdout, -1 none."""
    if mode == 2:

        def to_stdout(index: int, output: LoaderOutput) -> None:
            for payload in output.pl:
                text = (
                    payload.data.decode("utf-8", "replace")
                    if payload.meta.dataType == 0
                    else f"<{len(payload.data)} bytes>"
                )
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
        "p50": value(50) / 1000,
        "p90": value(90) / 1000,
        "p99": value(99) / 1000,
        "p999": value(99.9) / 1000,
        "max": histogram.get_max_value() / 1000,
    }


def report(recorder: Recorder, config: XtestConfig) -> dict[str, Any]:
    duration = max(recorder.finished - recorder.started, 1e-9)
    result: dict[str, Any] = {
        "requests": recorder.requests,
        "successes": recorder.successes,
        "errors": sum(recorder.errors.values()),
        "errors_by_code": dict(sorted(recorder.errors.items())),
        "duration_s": round(duration, 3),
        "throughput_rps": round(recorder.requests / duration, 2),
        "latency_ms": {k: round(v, 3) for k, v in percentiles(recorder.latency).items()},
        "mode": ("session" if config.session else "once")
        + (f", open loop at {config.rate}/s" if config.rate else f", closed loop x{config.concurrency}"),
    }
    if config.session:
        result["first_result_ms"] = {k: round(v, 3) for k, v in percentiles(recorder.first).items()}
    if recorder.hosts or recorder.retried or recorder.events:
        result["hosts"] = dict(sorted(recorder.hosts.items()))
        result["retried"] = recorder.retried
        result["retried_errors_by_code"] = dict(sorted(recorder.attempt_errors.items()))
        result["events"] = list(recorder.events)
    result["start_monotonic"] = round(recorder.started_monotonic, 6)
    result["timeline"] = timeline(recorder)
    return result


def timeline(recorder: Recorder) -> list[dict[str, Any]]:
    """Per second of the run, by when each call was due to start: successes, errors by code,
    and successes per host."""
    buckets: dict[int, dict[str, Any]] = {}
    for at, _, code, host in recorder.calls:
        bucket = buckets.setdefault(max(int(at), 0), {"ok": 0, "errors": Counter(), "hosts": Counter()})
        if code is None:
            bucket["ok"] += 1
            if host is not None:
                bucket["hosts"][host] += 1
        else:
            bucket["errors"][code] += 1
    return [
        {"t": second, "ok": b["ok"], "errors": dict(b["errors"]), "hosts": dict(b["hosts"])}
        for second, b in sorted(buckets.items())
    ]
