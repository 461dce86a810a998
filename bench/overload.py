"""Overload, side by side: goodput, fast refusals and wasted executions under open-loop load.

    .venv/bin/python bench/overload.py [--servers aiges,mlserver,pytriton] [--loads 0.5,1.5,3]
                                       [--seconds 15] [--out bench/RESULTS.md]

A model that sleeps 20 ms a call on 4 workers (capacity C = 200 calls/s) behind aiges (defaults:
``[worker] count = 4``, ``gpus = ""``, nothing tuned), MLServer 1.7.1 (4 parallel workers) and
PyTriton 0.7.0 (4 instances), all called over OIP gRPC (``inference.GRPCInferenceService/
ModelInfer``; ``bench/overload_servers.py``). Each load (a multiple of C) is an open-loop schedule
of Poisson arrivals: calls go out at their scheduled times whatever the replies do, each with a
250 ms gRPC deadline, from ``--generators`` processes (``bench/overload_generator.py``: grpc.aio on
uvloop, ``--connections`` HTTP/2 connections each, at SCHED_RR where allowed).

Every call carries its wall-clock send time in its ``sent`` tensor, and every model logs each
execution's start against it (``bench/start_log.py``), so the benchmark counts the executions
that began after their caller's deadline (wasted) and those that still started once every caller
had gone (it waits up to ``--quiet-wait`` s after the load for the log to go quiet; a server still
busy then is restarted before its next load, so loads do not share a backlog).

The generator's own health is part of every row: the achieved send rate and how late calls went
out against their schedule; a row whose generator fell behind is marked and should not be
trusted. The table goes to the terminal and, replacing its own section, into ``--out``; each run's
raw records (every call and execution) are kept under bench/.work/overload-*/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from overload_generator import PRIORITIES, Record
from overload_servers import BUILDERS, Server
from run import machine

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
GENERATOR = BENCH / "overload_generator.py"
REFUSALS = {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
ANSWERS = {*REFUSALS, "OK", "DEADLINE_EXCEEDED"}  # the rest are "other errors"
SECTION = "## Overload: goodput, refusals and wasted executions (`bench/overload.py`)"
QUIET_S = 1.0  # the start log is quiet once no execution started for this long


def cpu_pressure_us() -> float:
    """Microseconds, since boot, during which some runnable task waited for a CPU (PSI)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return math.nan
    return float(first.rsplit("total=", 1)[1])


def aiges_commit() -> str:
    """The commit of the aiges measured, ``+changes`` when aiges/ differs from it."""
    git = ["git", "-C", str(BENCH.parent)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        changed = subprocess.run([*git, "status", "--porcelain", "aiges"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + (" +changes" if changed.stdout.strip() else "")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)] if ordered else math.nan


@dataclass(frozen=True)
class Summary:
    """One row: a load against a server. Times in ms unless named otherwise."""

    server: str
    load: float
    target_rate: float
    calls: int
    sent_rate: float
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    kept_up: bool
    generator_cpu_pct: float
    pressure_pct: float
    goodput_c: float
    ok: int
    ok_p99_ms: float
    deadline_exceeded: int
    refused: int
    refused_p99_ms: float
    refusal_codes: dict[str, int]
    other_errors: dict[str, int]
    executions: int
    never_started: int
    wasted: int
    start_wait_p50_ms: float
    start_wait_max_ms: float
    started_after_all_gone: int
    last_start_after_load_s: float
    cut_off: bool


@dataclass
class Run:
    """What one load against one server produced: the generators' records and the model's starts."""

    server: str
    load: float
    seconds: float
    deadline: float
    capacity: float
    service_ms: float
    t0: float
    calls: list[Record] = field(default_factory=list)
    executions: list[tuple[float, float]] = field(default_factory=list)  # (start, sent)
    generator_cpu_s: list[float] = field(default_factory=list)
    pressure_pct: float = math.nan  # of the load's wall time, some task on the box waited for a CPU
    cut_off: bool = False  # the log was still busy when the quiet wait ended

    def summary(self) -> Summary:
        calls, deadline = self.calls, self.deadline
        late = [(sent - due) * 1000 for due, sent, *_ in calls]
        last_sent = max((sent for _, sent, *_ in calls), default=self.t0)
        ok = [latency for _, _, latency, code, _ in calls if code == "OK"]
        refused = [latency for _, _, latency, code, _ in calls if code in REFUSALS]
        waits = [(start - sent) * 1000 for start, sent in self.executions]
        # started once every caller had given up (the last send's deadline had passed),
        # timed from the end of the load (its last send)
        after = [start - last_sent for start, _ in self.executions if start > last_sent + deadline]
        return Summary(
            server=self.server,
            load=self.load,
            target_rate=self.load * self.capacity,
            calls=len(calls),
            sent_rate=len(calls) / self.seconds,
            late_p50_ms=percentile(late, 50),
            late_p99_ms=percentile(late, 99),
            late_max_ms=max(late, default=math.nan),
            # trusted when 99 % of the calls went out less than one service time late: an arrival
            # moved by less than that changes what a worker's queue holds by under one call
            kept_up=percentile(late, 99) <= self.service_ms,
            # the busiest generator, in % of a core over the time it sent and waited for replies
            generator_cpu_pct=100 * max(self.generator_cpu_s, default=0.0) / (self.seconds + deadline),
            pressure_pct=self.pressure_pct,
            goodput_c=sum(1 for latency in ok if latency <= deadline) / self.seconds / self.capacity,
            ok=len(ok),
            ok_p99_ms=percentile(ok, 99) * 1000,
            deadline_exceeded=sum(1 for *_, code, _ in calls if code == "DEADLINE_EXCEEDED"),
            refused=len(refused),
            refused_p99_ms=percentile(refused, 99) * 1000,
            refusal_codes=dict(Counter(f"{code} {aiges}".strip() for *_, code, aiges in calls if code in REFUSALS)),
            other_errors=dict(Counter(code for *_, code, _ in calls if code not in ANSWERS)),
            executions=len(self.executions),
            never_started=len(calls) - len(self.executions),
            wasted=sum(1 for start, sent in self.executions if start > sent + deadline),
            start_wait_p50_ms=percentile(waits, 50),
            start_wait_max_ms=max(waits, default=math.nan),
            started_after_all_gone=len(after),
            last_start_after_load_s=max(after, default=0.0),
            cut_off=self.cut_off,
        )  # fmt: skip


def run_load(server: Server, load: float, args: argparse.Namespace) -> Run:
    """Start the generators, give them one start time, collect their records, then wait for the
    model's start log to go quiet."""
    capacity = args.workers * 1000 / args.service_ms
    command = [sys.executable, str(GENERATOR), "--address", server.address]
    command += ["--rate", str(load * capacity / args.generators), "--seconds", str(args.seconds)]
    command += ["--deadline", str(args.deadline), "--connections", str(args.connections)]
    command += ["--arrivals", args.arrivals, "--priority", args.generator_priority]
    generators = [
        subprocess.Popen(
            [*command, "--seed", str(args.seed * 1000 + index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(args.generators)
    ]
    for generator in generators:
        assert generator.stdout is not None
        if generator.stdout.readline().strip() != "ready":
            raise SystemExit(f"a load generator against {server.name} did not start")
    t0 = time.time() + 0.3
    pressure_before, began = cpu_pressure_us(), time.monotonic()
    for generator in generators:
        assert generator.stdin is not None
        generator.stdin.write(f"{t0!r}\n")
        generator.stdin.flush()
    run = Run(server.name, load, args.seconds, args.deadline, capacity, args.service_ms, t0)
    for generator in generators:
        out, _ = generator.communicate(timeout=args.seconds + 120)
        if generator.returncode != 0:
            raise SystemExit(f"a load generator against {server.name} failed ({generator.returncode})")
        report = json.loads(out)
        run.calls += [tuple(record) for record in report["calls"]]
        run.generator_cpu_s.append(report["cpu_s"])
    run.pressure_pct = (cpu_pressure_us() - pressure_before) / 1e4 / (time.monotonic() - began)
    while True:
        starts = server.starts()
        now = time.time()
        if now - max((start for start, _ in starts), default=0.0) >= QUIET_S:
            break
        if now - (t0 + args.seconds) >= args.quiet_wait:
            run.cut_off = True
            break
        time.sleep(0.25)
    # this run's calls only: the generators' connecting calls carry sent = 0, earlier runs' were
    # sent before t0
    run.executions = [(start, sent) for start, sent in starts if sent >= t0 - 0.05]
    return run


def row(s: Summary) -> str:
    late = f"{s.late_p99_ms:.1f} / {s.late_max_ms:.0f} ms" + ("" if s.kept_up else " **behind**")
    refusals = "0"
    if s.refused:
        codes = ", ".join(code if len(s.refusal_codes) == 1 else f"{code} x{n}" for code, n in s.refusal_codes.items())
        refusals = f"{s.refused} ({s.refused_p99_ms:.0f} ms; {codes})"
    errors = ", ".join(f"{code} x{n}" for code, n in s.other_errors.items()) or "-"
    wasted = f"{s.wasted} ({100 * s.wasted / s.executions:.0f} %)" if s.executions else "0"
    after = "-"
    if s.started_after_all_gone:
        after = f"{s.started_after_all_gone}, until {s.last_start_after_load_s:.1f} s after the load"
        if s.cut_off:
            after += " (still starting when the wait ended)"
    return (
        f"| {s.server} | {s.load:g} C | {s.sent_rate:.0f} ({s.target_rate:.0f}) | {late} "
        f"| {s.generator_cpu_pct:.0f} % | {s.pressure_pct:.0f} % "
        f"| **{s.goodput_c:.2f} C** | {s.ok_p99_ms:.0f} ms | {s.deadline_exceeded} | {refusals} | {errors} "
        f"| {s.executions} | {s.never_started} | {wasted} | {s.start_wait_p50_ms:.0f} / {s.start_wait_max_ms:.0f} ms "
        f"| {after} |"
    )


HEADER = [
    "| server | load | sent/s (target) | late p99 / max | generator CPU | CPU pressure | goodput | OK p99 "
    "| deadline exceeded | fast refusals (p99) | other errors | executions | never started | wasted "
    "| start wait p50 / max | started after every caller had gone |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
]


def verdict(summaries: list[Summary]) -> str:
    behind = [f"{s.server} at {s.load:g} C" for s in summaries if not s.kept_up]
    if not behind:
        return "The generator kept its schedule in every row (99 % of calls out less than one service time late)."
    return f"**The generator fell behind in: {', '.join(behind)}; do not trust those rows.**"


def section(summaries: list[Summary], started: dict[str, float], args: argparse.Namespace) -> list[str]:
    capacity = args.workers * 1000 / args.service_ms
    command = (
        f".venv/bin/python bench/overload.py --servers {args.servers} --loads {args.loads} --seconds {args.seconds:g}"
    )
    return [
        SECTION,
        "",
        f"Machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. A model sleeping "
        f"{args.service_ms:g} ms a call on {args.workers} workers (C = {capacity:.0f} calls/s), {args.arrivals} "
        f"arrivals for {args.seconds:g} s per load, every call with a {args.deadline * 1000:.0f} ms gRPC deadline, "
        f"OIP gRPC ModelInfer; load from {args.generators} grpc.aio processes x {args.connections} connections "
        f"(priority: {args.generator_priority}); nothing pinned; aiges at {aiges_commit()}. "
        "Start-up until the model was ready: "
        + "; ".join(f"{name} {s:.1f} s" for name, s in started.items())
        + ". How to read it: `bench/NOTES.md`, *Reading the overload table*.",
        "",
        *HEADER,
        *(row(s) for s in summaries),
        "",
        verdict(summaries),
        "",
        f"`{command}`",
        "",
    ]  # fmt: skip


def write_section(path: Path, body: list[str]) -> None:
    """Replace this benchmark's section of ``path`` (from its heading to the next ``## ``), or add it."""
    old = path.read_text().splitlines() if path.exists() else []
    if SECTION in old:
        begin = old.index(SECTION)
        end = next((i for i in range(begin + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:begin] + body + old[end:]
    else:
        new = old + ([""] if old and old[-1] else []) + body
    path.write_text("\n".join(new).rstrip() + "\n")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default="aiges,mlserver,pytriton", help="comma separated, of " + ",".join(BUILDERS)
    )
    parser.add_argument("--loads", default="0.5,1.5,3", help="offered loads, multiples of the capacity C")
    parser.add_argument("--seconds", type=float, default=15, help="length of each load")
    parser.add_argument("--deadline", type=float, default=0.25, help="every call's gRPC deadline, seconds")
    parser.add_argument("--service-ms", type=float, default=20, help="the model's time per call")
    parser.add_argument(
        "--workers", type=int, default=4, help="aiges workers, MLServer parallel workers, PyTriton instances"
    )
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=2, help="HTTP/2 connections per generator")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument(
        "--generator-priority",
        choices=PRIORITIES,
        default="rr",
        help="the generators' scheduling: rr (SCHED_RR 1), nice (-10) or none; they use 10-15 %% of a core "
        "each, and a higher priority keeps them on schedule on a busy box (needs root, else it falls back)",
    )
    parser.add_argument("--seed", type=int, default=1, help="of the arrival schedule; the same for every server")
    parser.add_argument(
        "--quiet-wait", type=float, default=20, help="most seconds to wait after a load for executions to stop"
    )
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="'' to write no file")
    args = parser.parse_args()
    unknown = set(args.servers.split(",")) - set(BUILDERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args  # fmt: skip


def main() -> None:
    args = arguments()
    loads = [float(x) for x in args.loads.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="overload-", dir=WORK))
    summaries: list[Summary] = []
    started: dict[str, float] = {}
    print("\n".join(HEADER), flush=True)
    for key in args.servers.split(","):
        server = BUILDERS[key](run_dir, args.workers)
        server.start(args.service_ms)
        started[server.name] = server.started_s
        try:
            for index, load in enumerate(loads):
                run = run_load(server, load, args)
                raw = {"t0": run.t0, "calls": run.calls, "executions": run.executions}
                (run_dir / f"{key}-{load:g}C.json").write_text(json.dumps(raw))
                summaries.append(run.summary())
                print(row(summaries[-1]), flush=True)
                if run.cut_off and index + 1 < len(loads):
                    print(f"({server.name} still executing: restarted before the next load)", flush=True)
                    server.stop()
                    server.start(args.service_ms)
        finally:
            server.stop()
    (run_dir / "summary.json").write_text(json.dumps([dataclasses.asdict(s) for s in summaries], indent=1))
    print(verdict(summaries))
    if args.out:
        write_section(Path(args.out), section(summaries, started, args))
        print(f"wrote {args.out}; raw records in {run_dir}")


if __name__ == "__main__":
    main()
