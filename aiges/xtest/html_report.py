"""``aiges xtest --html FILE``: the closing report as one self-contained HTML page.

The page holds the report's figures (requests, errors by code, throughput, percentiles, calls per
host) and three charts drawn as inline SVG (``aiges.xtest.svg``): latency over the run (p50, p90,
p99 and max of the calls started in each second), requests per second with the errors of each
second, and the latency distribution with its percentiles marked. No script, stylesheet or font
is fetched: the file opens offline and can be attached to a ticket as it is.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from aiges.xtest.figures import quantile
from aiges.xtest.svg import ERROR_COLOUR, PALETTE, Bar, Chart, Series

CallRow = tuple[float, float, str | None, str | None]
"""(start offset s, latency s, code or None, host), as ``Recorder.calls`` holds them."""

BINS = 40
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 0.2em 1em 0.2em 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #777; }
"""


def per_second(calls: Iterable[CallRow]) -> dict[int, list[CallRow]]:
    seconds: dict[int, list[CallRow]] = defaultdict(list)
    for call in calls:
        seconds[max(int(call[0]), 0)].append(call)
    return dict(sorted(seconds.items()))


def latency_chart(seconds: dict[int, list[CallRow]]) -> str:
    """p50, p90, p99 and max (ms) of the calls that started in each second, on a log axis."""
    names = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    points: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in names}
    for second, calls in seconds.items():
        ordered = sorted(call[1] * 1000 for call in calls)
        for name, q in names:
            points[name].append((second + 0.5, quantile(ordered, q)))
    values = [y for series in points.values() for _, y in series] or [1.0]
    low, high = max(min(values), 1e-3), max(max(values), 1e-3)
    chart = Chart(
        (0, max(seconds, default=0) + 1),
        (low / 1.5, high * 1.5),
        x_label="seconds into the run (by start)",
        y_label="latency, ms",
        log_y=True,
        name="latency-over-time",
    )
    for (name, _), colour in zip(names, PALETTE, strict=False):
        chart.line(Series(name, points[name], colour), " ms")
    return chart.text()


def throughput_chart(seconds: dict[int, list[CallRow]]) -> str:
    """Successes per second as a line, the errors of each second as bars (by code in the tooltip)."""
    successes: list[tuple[float, float]] = []
    errors: list[Bar] = []
    for second, calls in seconds.items():
        codes = Counter(call[2] for call in calls if call[2] is not None)
        successes.append((second + 0.5, float(len(calls) - sum(codes.values()))))
        if codes:
            note = f"second {second}: " + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
            errors.append(Bar(second + 0.1, second + 0.9, float(sum(codes.values())), note))
    top = max([y for _, y in successes] + [bar.height for bar in errors] + [1.0])
    chart = Chart(
        (0, max(seconds, default=0) + 1),
        (0, top * 1.1),
        x_label="seconds into the run (by start)",
        y_label="requests per second",
        name="throughput",
    )
    chart.bars("errors", errors, ERROR_COLOUR)
    chart.line(Series("successes", successes, PALETTE[2]))
    return chart.text()


def distribution_chart(latencies_ms: Sequence[float], marks: dict[str, float]) -> str:
    """How many calls took how long: ``BINS`` bins spaced evenly on a log axis, and the
    report's percentiles as markers."""
    low, high = max(min(latencies_ms, default=1.0), 1e-3), max(max(latencies_ms, default=1.0), 1e-3)
    if high <= low:
        low, high = low / 1.1, high * 1.1
    edges = [low * (high / low) ** (i / BINS) for i in range(BINS + 1)]
    counts = [0] * BINS
    step = math.log(high / low) / BINS
    for value in latencies_ms:
        index = int(math.log(max(value, low) / low) / step) if step else 0
        counts[min(index, BINS - 1)] += 1
    bars = [
        Bar(edges[i], edges[i + 1], float(count), f"{edges[i]:.3g}-{edges[i + 1]:.3g} ms: {count} calls")
        for i, count in enumerate(counts)
        if count
    ]
    chart = Chart(
        (low, high),
        (0, max(counts + [1]) * 1.1),
        x_label="latency, ms (log)",
        y_label="calls",
        log_x=True,
        name="distribution",
    )
    chart.bars("calls", bars, PALETTE[0])
    for row, (name, value) in enumerate(marks.items()):
        if low <= value <= high:
            chart.marker(name, value, PALETTE[(row + 1) % len(PALETTE)], row)
    return chart.text()


def rows(pairs: Iterable[tuple[str, Any]]) -> str:
    return "".join(
        f"<tr><th>{html.escape(str(key))}</th><td class='n'>{html.escape(str(value))}</td></tr>" for key, value in pairs
    )


def render(result: dict[str, Any], calls: Sequence[CallRow], title: str = "aiges xtest") -> str:
    """The page for a report (``runner.report``) and the calls it was made from."""
    seconds = per_second(calls)
    latency = result["latency_ms"]
    summary = [
        ("mode", result["mode"]),
        ("requests", result["requests"]),
        ("successes", result["successes"]),
        ("errors", result["errors"]),
        ("duration", f"{result['duration_s']:.1f} s"),
        ("throughput", f"{result['throughput_rps']:.1f} requests/s"),
        *((f"latency {k}", f"{v:.2f} ms") for k, v in latency.items()),
        *((f"first result {k}", f"{v:.2f} ms") for k, v in result.get("first_result_ms", {}).items()),
    ]
    parts = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<table class='summary'>{rows(summary)}</table>",
    ]
    if result["errors_by_code"]:
        parts.append("<h2>Errors by code</h2>")
        parts.append(f"<table class='errors'>{rows(result['errors_by_code'].items())}</table>")
    if result.get("hosts"):
        parts.append("<h2>Calls per host</h2>")
        parts.append(f"<table class='hosts'>{rows(result['hosts'].items())}</table>")
    marks = {"p50": latency["p50"], "p99": latency["p99"], "p99.9": latency["p999"]}
    parts += [
        "<h2>Latency over time</h2>",
        "<p class='muted'>Of the calls that started in each second; hover a point for its value.</p>",
        latency_chart(seconds),
        "<h2>Requests per second</h2>",
        throughput_chart(seconds),
        "<h2>Latency distribution</h2>",
        distribution_chart([call[1] * 1000 for call in calls], marks),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
