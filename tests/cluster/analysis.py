"""Figures of a cluster run: per fault window and per balance window, from xtest's call logs and
reports; ``RESULTS.md`` and the timeline plot."""

from __future__ import annotations

import math
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import Call, CallLog


@dataclass
class Fault:
    name: str
    title: str
    host: str | None = None  # the host's address, for host faults
    injected: float = 0.0
    restored: float | None = None  # when the test undid the fault (restart, link up...)
    recovered: float | None = None  # when the state the test waited for was reached
    end: float = 0.0  # the end of the window its figures are taken over
    notes: dict = field(default_factory=dict)


@dataclass
class Window:
    name: str
    start: float
    end: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def in_window(calls: list[Call], start: float, end: float) -> list[Call]:
    """The calls that ended in [start, end): those in flight when a fault came count in its window."""
    return [c for c in calls if start <= c.t + c.ms / 1000 < end]


def stats(calls: list[Call]) -> dict:
    errors = Counter(c.code for c in calls if c.code is not None)
    return {
        "requests": len(calls),
        "errors": sum(errors.values()),
        "errors_by_code": dict(sorted(errors.items())),
        "retried": sum(1 for c in calls if c.tries),
        "retried_after": dict(sorted(Counter(code for c in calls for _, _, code in c.tries).items())),
        "p99_ms": round(percentile([c.ms for c in calls], 99), 1),
        "max_ms": round(max((c.ms for c in calls), default=0.0), 1),
        "hosts": dict(sorted(Counter(c.host for c in calls if c.code is None and c.host).items())),
    }


def first_event(log: CallLog, kind: str, address: str | None, after: float) -> float | None:
    for event in log.events:
        if event["t"] >= after and event["event"] == kind and (address is None or event["address"] == address):
            return event["t"]
    return None


def fault_figures(fault: Fault, once: CallLog, sessions: CallLog) -> dict:
    figures: dict[str, Any] = {
        "once": stats(in_window(once.calls, fault.injected, fault.end)),
        "sessions": stats(in_window(sessions.calls, fault.injected, fault.end)),
    }
    if fault.host is not None:
        until = fault.restored if fault.restored is not None else fault.end
        last = once.last_attempt_on(fault.host, fault.injected, until)
        figures["last_sent_s"] = round(last - fault.injected, 3) if last is not None else 0.0
        for label, kind in (("marked_down_s", "down"), ("removed_s", "removed")):
            seen = first_event(once, kind, fault.host, fault.injected)
            figures[label] = round(seen - fault.injected, 3) if seen is not None and seen < until else None
        health = next(
            (
                e["t"]
                for e in once.events
                if e["t"] >= fault.injected
                and e["address"] == fault.host
                and e["event"].startswith("health ")
                and e["event"] != "health SERVING"
            ),
            None,
        )
        figures["health_seen_s"] = round(health - fault.injected, 3) if health is not None and health < until else None
    if fault.restored is not None and fault.recovered is not None:
        figures["recover_s"] = round(fault.recovered - fault.restored, 3)
    figures["window_s"] = round(fault.end - fault.injected, 1)
    return figures


def shares(calls: list[Call], window: Window, hosts: list[str]) -> dict[str, float]:
    counts = Counter(c.host for c in in_window(calls, window.start, window.end) if c.code is None)
    total = sum(counts[h] for h in hosts) or 1
    return {h: counts[h] / total for h in hosts}


def fmt_codes(codes: dict) -> str:
    return ", ".join(f"{code} x{n}" for code, n in codes.items()) or "none"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def results_markdown(
    faults: list[Fault],
    figures: dict[str, dict],
    balance: dict[str, Any],
    settings: dict,
    names: dict[str, str],
    duration_s: float,
    totals: dict,
) -> str:
    lines = [
        "# Cluster run: faults and balance",
        "",
        "Written by `make cluster-test` (`tests/cluster/test_cluster.py`); the figures below are from its last run.",
        "",
        f"Machine: {settings['cpus']} CPUs shared with other work, {platform.system()} {platform.release()}. "
        f"Cluster: 3 etcd members, 4 aiges hosts ({settings['workers']} workers each, service time "
        f"{settings['service_ms']} ms of sleep, {settings['licences']} licences, registry lease TTL "
        f"{settings['ttl_s']} s; their config from the config centre, below), one client namespace running two "
        f"`aiges xtest --etcd` loads in open loop (and two more through the gateway, below): "
        f"one-shot calls at {settings['rate']}/s (`--idempotent`) and sessions at {settings['session_rate']}/s "
        f"({settings['frames']} frames each). Each network namespace sits on one private bridge with no route out.",
        "",
        f"Whole run: {duration_s:.0f} s of load, {totals['once']['requests']} one-shot calls "
        f"(errors: {fmt_codes(totals['once']['errors_by_code'])}; "
        f"{totals['once']['retried']} retried on another host), {totals['sessions']['requests']} sessions "
        f"(errors: {fmt_codes(totals['sessions']['errors_by_code'])}).",
        "",
        "![throughput and errors over the run](timeline.png)",
        "",
        "## Faults",
        "",
        "Each fault's window runs from its injection until its recovery was seen plus a few seconds. "
        "*Last sent*: when the client last sent a call to the lost host after the fault; *marked down*: when "
        "the client marked it down itself (gRPC connection state or a failed call); *removed*: when the "
        "registry's deletion reached the client; *recover*: from undoing the fault (restart, link up, ...) to "
        "the first call the host served again. For the etcd faults there is nothing on the data path to "
        "detect: *recover* runs from restarting the members to etcd serving with a leader (leader killed) or to "
        "every host's registration resumed (quorum lost); the time to elect a new leader is in the notes. "
        "*p99*: of the one-shot calls that ended in the window, counted from each call's scheduled start "
        "(open loop: queueing and retries are not hidden); *max*: the slowest, typically a call retried after "
        "its connection was found dead. The retry rule and what the client does on each "
        "fault are in the README (Running many hosts).",
        "",
        "| fault | one-shot calls | one-shot errors | retried (after) | sessions (errors) | last sent | "
        "marked down | removed | recover | p99 | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fault in faults:
        f = figures[fault.name]
        once, sessions = f["once"], f["sessions"]
        lines.append(
            f"| {fault.title} | {once['requests']} | {fmt_codes(once['errors_by_code'])} | {once['retried']} "
            f"({fmt_codes(once['retried_after'])}) | {sessions['requests']} "
            f"({fmt_codes(sessions['errors_by_code'])}) | {fmt_s(f.get('last_sent_s'))} | "
            f"{fmt_s(f.get('marked_down_s'))} | {fmt_s(f.get('removed_s'))} | {fmt_s(f.get('recover_s'))} | "
            f"{once['p99_ms']:.0f} ms | {once['max_ms']:.0f} ms |"
        )
    lines += ["", "Notes per fault:", ""]
    for fault in faults:
        notes = "; ".join(f"{k}: {v}" for k, v in fault.notes.items())
        lines.append(f"- **{fault.title}**: {notes}")
    lines += [
        "",
        "## Balance",
        "",
        "Share of the one-shot calls each host served (successes), over a window of steady load.",
        "",
        "| window | " + " | ".join(names[h] for h in balance["hosts"]) + " | note |",
        "|---|" + "---|" * len(balance["hosts"]) + "---|",
    ]
    for key in ("equal", "slow"):
        row = balance[key]
        lines.append(
            f"| {row['title']} | "
            + " | ".join(f"{row['shares'][h]:.1%}" for h in balance["hosts"])
            + f" | {row['note']} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(
    once_report: dict,
    sessions_report: dict,
    faults: list[Fault],
    windows: list[Window],
    start: float,
    names: dict[str, str],
    retried_at: list[float],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = once_report["timeline"]
    seconds = [b["t"] for b in timeline]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(14, 7), sharex=True, height_ratios=(3, 1.4))
    hosts = sorted(names)
    for host in hosts:
        top.step(
            seconds,
            [b["hosts"].get(host, 0) for b in timeline],
            where="post",
            linewidth=1.2,
            label=f"{names[host]} served",
        )
    top.step(seconds, [b["ok"] for b in timeline], where="post", color="black", linewidth=1.0, label="all")
    top.set_ylabel("one-shot successes / s")
    top.set_ylim(0, max(b["ok"] for b in timeline) * 1.15)
    top.legend(loc="upper left", ncols=5, fontsize=8)
    errors = [sum(b["errors"].values()) for b in timeline]
    session_errors = {b["t"]: sum(b["errors"].values()) for b in sessions_report["timeline"]}
    bottom.bar(seconds, errors, width=1.0, align="edge", color="tab:red", label="one-shot errors")
    bottom.bar(
        seconds,
        [session_errors.get(t, 0) for t in seconds],
        width=1.0,
        align="edge",
        bottom=errors,
        color="tab:purple",
        label="session errors",
    )
    retried = Counter(int(t) for t in retried_at)
    if retried:
        bottom.plot(sorted(retried), [retried[t] for t in sorted(retried)], "k.", label="retried elsewhere")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper left", fontsize=8)
    for axis in (top, bottom):
        for fault in faults:
            axis.axvspan(fault.injected - start, fault.end - start, color="grey", alpha=0.15)
        for window in windows:
            axis.axvspan(window.start - start, window.end - start, color="tab:green", alpha=0.08)
    labels = top.get_xaxis_transform()  # x in seconds, y in axes fractions
    for fault in faults:
        top.text(
            (fault.injected + fault.end) / 2 - start,
            1.01,
            fault.name,
            transform=labels,
            fontsize=8,
            ha="center",
            va="bottom",
        )
    for window in windows:
        top.text(
            (window.start + window.end) / 2 - start,
            1.01,
            window.name,
            transform=labels,
            fontsize=8,
            ha="center",
            va="bottom",
            color="tab:green",
        )
    figure.suptitle(
        "aiges cluster run: calls served per host, and errors, per second; faults one at a time "
        "(grey), balance windows (green)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
