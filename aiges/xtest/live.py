"""xtest's live view: throughput, errors by code and p50/p99 over the last seconds, while it runs.

On a terminal it is a ``rich`` table redrawn in place; when stdout is not a terminal (a pipe, a
log file, CI), one plain line per update, so that a log shows the run as it went. Either shows
a last update once the run stops, before the closing report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich import box
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from aiges.xtest.figures import Recent, RecentCalls


@dataclass(frozen=True)
class Status:
    """Where a run stands: its progress, and the figures of its last seconds."""

    elapsed_s: float
    done: int
    errors: int
    planned: int | None
    """Requests planned (``--requests``), None for a run of ``duration_s`` seconds."""
    duration_s: float | None
    recent: Recent

    @property
    def fraction(self) -> float:
        if self.planned:
            return min(self.done / self.planned, 1.0)
        if self.duration_s:
            return min(self.elapsed_s / self.duration_s, 1.0)
        return 0.0


class LiveView(Protocol):
    def show(self, status: Status) -> None: ...

    def close(self) -> None: ...


def error_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{code}: {count}" for code, count in errors.items())


def describe(status: Status) -> str:
    """One plain line: ``xtest 3.0s  1200 done of 3000  last 3 s: 400.0/s  errors 2 (10909: 2)
    p50 1.20 ms  p99 3.40 ms  errors in all 5``."""
    recent = status.recent
    done = f"{status.done} done" + (f" of {status.planned}" if status.planned else "")
    errors = f"errors {recent.error_count}" + (f" ({error_text(recent.errors)})" if recent.errors else "")
    latency = (
        f"p50 {recent.p50_ms:.2f} ms  p99 {recent.p99_ms:.2f} ms"
        if recent.p50_ms is not None and recent.p99_ms is not None
        else "p50 -  p99 -"
    )
    return (
        f"xtest {status.elapsed_s:.1f}s  {done}  last {recent.span_s:.0f} s: {recent.throughput_rps:.1f}/s  "
        f"{errors}  {latency}  errors in all {status.errors}"
    )


class PlainLines:
    """A line per update on a stream that is not a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, status: Status) -> None:
        self.out.write(describe(status) + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


class RichView:
    """A table redrawn in place on a terminal (rich's ``Live``)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._live.start()

    def show(self, status: Status) -> None:
        self._live.update(self.render(status), refresh=True)

    def close(self) -> None:
        self._live.stop()

    @staticmethod
    def render(status: Status) -> Table:
        recent = status.recent
        table = Table(title="aiges xtest", box=box.SIMPLE, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        ran = f"{status.elapsed_s:.1f} s" + (f" of {status.duration_s:g} s" if status.duration_s else "")
        table.add_row("running", ran)
        done = f"{status.done}" + (f" of {status.planned}" if status.planned else "")
        table.add_row("requests", done)
        if status.planned or status.duration_s:
            table.add_row("", ProgressBar(total=1.0, completed=status.fraction, width=40))
        span = f"last {recent.span_s:.0f} s"
        table.add_row(span, f"{recent.throughput_rps:.1f} requests/s")
        errors = Text(f"{recent.error_count}", style="red" if recent.errors else "green")
        if recent.errors:
            errors.append(f"  {error_text(recent.errors)}")
        table.add_row("errors", errors)
        if recent.p50_ms is not None and recent.p99_ms is not None:
            table.add_row("latency", f"p50 {recent.p50_ms:.2f} ms   p99 {recent.p99_ms:.2f} ms")
        table.add_row("errors in all", Text(str(status.errors), style="red" if status.errors else ""))
        return table


def open_view(out: TextIO) -> LiveView:
    """``rich`` on a terminal, plain lines elsewhere."""
    if out.isatty():
        return RichView(Console(file=out))
    return PlainLines(out)


async def keep_showing(view: LiveView, status: Callable[[], Status], every_s: float) -> None:
    """Update ``view`` every ``every_s`` seconds until cancelled, then once more and close it."""
    try:
        while True:
            await asyncio.sleep(every_s)
            view.show(status())
    finally:
        with contextlib.suppress(Exception):  # a closed stdout must not hide the report
            view.show(status())
        view.close()


def status_source(
    recent: RecentCalls, done: Callable[[], tuple[int, int]], planned: int | None, duration_s: float | None
) -> Callable[[], Status]:
    """A function giving the run's status now; ``done()`` answers (requests done, errors)."""
    started = time.perf_counter()

    def status() -> Status:
        requests, errors = done()
        return Status(time.perf_counter() - started, requests, errors, planned, duration_s, recent.figures())

    return status
