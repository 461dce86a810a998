"""The two kinds of chart xtest's HTML report draws, as inline SVG: lines (and bars) over time,
and a histogram on a log axis.

Why not a plotting library: the report needs three plain charts, and the libraries that draw them
would each be a large runtime dependency of a command-line client (matplotlib with numpy's
friends, pillow, fonttools, kiwisolver, contourpy: tens of MB) or put a JavaScript bundle of
megabytes into every report (plotly, bokeh). SVG written with the standard library's
ElementTree (which does the escaping) keeps the install as it is and the report one small file
that any browser opens offline. Every mark carries ``data-*`` attributes with the figure it
draws, so a test can read the chart back.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

SVG_NS = "http://www.w3.org/2000/svg"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 110, 16, 44
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
ERROR_COLOUR = "#d62728"


@dataclass(frozen=True)
class Series:
    """A line: ``points`` are (x, y)."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str


@dataclass(frozen=True)
class Bar:
    """A bar from ``x0`` to ``x1``, ``height`` high; ``note`` is its tooltip."""

    x0: float
    x1: float
    height: float
    note: str = ""


@dataclass(frozen=True)
class Scale:
    """Data ``low..high`` onto pixels ``start..end``, linear or log10."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        low, high, value = self.low, self.high, value
        if self.log:
            low, high, value = math.log10(low), math.log10(high), math.log10(max(value, self.low))
        span = (high - low) or 1.0
        return self.start + (value - low) / span * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            return log_ticks(self.low, self.high)
        return linear_ticks(self.low, self.high)


def linear_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round ticks (1, 2 or 5 times a power of ten apart) over ``low..high``."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """1, 2 and 5 times each power of ten in ``low..high`` (only the powers when they are many)."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    multiples = (1, 2, 5) if last - first <= 4 else (1,)
    ticks = [m * 10.0**p for p in range(first, last + 1) for m in multiples]
    return [t for t in ticks if low <= t <= high] or [low, high]


def number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


class Chart:
    """An SVG drawing with axes; add lines, bars and markers, then ``text()``."""

    def __init__(
        self,
        x: tuple[float, float],
        y: tuple[float, float],
        *,
        x_label: str,
        y_label: str,
        log_x: bool = False,
        log_y: bool = False,
        width: int = 880,
        height: int = 300,
        name: str = "chart",
    ) -> None:
        self.width, self.height = width, height
        self.x = Scale(x[0], x[1], MARGIN_LEFT, width - MARGIN_RIGHT, log_x)
        self.y = Scale(y[0], y[1], height - MARGIN_BOTTOM, MARGIN_TOP, log_y)
        self.root = ET.Element(
            "svg",
            {
                "xmlns": SVG_NS,
                "class": name,
                "width": str(width),
                "height": str(height),
                "viewBox": f"0 0 {width} {height}",
                "role": "img",
                "font-family": "sans-serif",
                "font-size": "11",
            },
        )
        self._legend = 0
        self._axes(x_label, y_label)

    def _axes(self, x_label: str, y_label: str) -> None:
        axes = ET.SubElement(self.root, "g", {"class": "axes", "stroke": "#999", "fill": "#444"})
        left, right = self.x.start, self.x.end
        bottom, top = self.y.start, self.y.end
        for tick in self.x.ticks():
            px = self.x(tick)
            ET.SubElement(
                axes,
                "line",
                {"x1": f"{px:.1f}", "x2": f"{px:.1f}", "y1": f"{bottom}", "y2": f"{top}", "stroke": "#eee"},
            )
            label = ET.SubElement(
                axes, "text", {"x": f"{px:.1f}", "y": f"{bottom + 14}", "text-anchor": "middle", "stroke": "none"}
            )
            label.text = number(tick)
        for tick in self.y.ticks():
            py = self.y(tick)
            ET.SubElement(
                axes,
                "line",
                {"x1": f"{left}", "x2": f"{right}", "y1": f"{py:.1f}", "y2": f"{py:.1f}", "stroke": "#eee"},
            )
            label = ET.SubElement(
                axes, "text", {"x": f"{left - 6}", "y": f"{py + 4:.1f}", "text-anchor": "end", "stroke": "none"}
            )
            label.text = number(tick)
        ET.SubElement(
            axes,
            "rect",
            {"x": f"{left}", "y": f"{top}", "width": f"{right - left}", "height": f"{bottom - top}", "fill": "none"},
        )
        x_text = ET.SubElement(
            axes,
            "text",
            {"x": f"{(left + right) / 2}", "y": f"{self.height - 8}", "text-anchor": "middle", "stroke": "none"},
        )
        x_text.text = x_label
        y_text = ET.SubElement(
            axes,
            "text",
            {"transform": f"translate(14 {(top + bottom) / 2}) rotate(-90)", "text-anchor": "middle", "stroke": "none"},
        )
        y_text.text = y_label

    def legend(self, name: str, colour: str) -> None:
        y = MARGIN_TOP + 6 + 16 * self._legend
        self._legend += 1
        x = self.x.end + 12
        ET.SubElement(self.root, "rect", {"x": f"{x}", "y": f"{y - 8}", "width": "10", "height": "10", "fill": colour})
        label = ET.SubElement(self.root, "text", {"x": f"{x + 14}", "y": f"{y + 1}"})
        label.text = name

    def line(self, series: Series, unit: str = "") -> None:
        group = ET.SubElement(self.root, "g", {"class": "series", "data-name": series.name, "fill": series.colour})
        if series.points:
            points = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in series.points)
            ET.SubElement(
                group, "polyline", {"points": points, "fill": "none", "stroke": series.colour, "stroke-width": "1.5"}
            )
        for x, y in series.points:
            dot = ET.SubElement(
                group,
                "circle",
                {"cx": f"{self.x(x):.1f}", "cy": f"{self.y(y):.1f}", "r": "2", "data-x": f"{x:g}", "data-y": f"{y:g}"},
            )
            ET.SubElement(dot, "title").text = f"{series.name} at {number(x)}: {number(y)}{unit}"
        self.legend(series.name, series.colour)

    def bars(self, name: str, bars: Sequence[Bar], colour: str) -> None:
        group = ET.SubElement(
            self.root, "g", {"class": "bars", "data-name": name, "fill": colour, "fill-opacity": "0.75"}
        )
        base = self.y.start
        for bar in bars:
            x0, x1 = self.x(bar.x0), self.x(bar.x1)
            top = self.y(bar.height) if bar.height > 0 else base
            rect = ET.SubElement(
                group,
                "rect",
                {
                    "x": f"{x0:.1f}",
                    "y": f"{top:.1f}",
                    "width": f"{max(x1 - x0 - 0.5, 0.5):.1f}",
                    "height": f"{base - top:.1f}",
                    "data-count": f"{bar.height:g}",
                },
            )
            if bar.note:
                ET.SubElement(rect, "title").text = bar.note
        self.legend(name, colour)

    def marker(self, name: str, x: float, colour: str, row: int = 0) -> None:
        """A vertical line at ``x`` (a percentile on a distribution); ``row`` moves its label down,
        so that close markers stay readable."""
        px = self.x(x)
        group = ET.SubElement(self.root, "g", {"class": "marker", "data-name": name, "data-x": f"{x:g}"})
        ET.SubElement(
            group,
            "line",
            {
                "x1": f"{px:.1f}",
                "x2": f"{px:.1f}",
                "y1": f"{self.y.start}",
                "y2": f"{self.y.end}",
                "stroke": colour,
                "stroke-dasharray": "4 3",
            },
        )
        label = ET.SubElement(
            group, "text", {"x": f"{px + 3:.1f}", "y": f"{self.y.end + 10 + 12 * row}", "fill": colour}
        )
        label.text = name

    def text(self) -> str:
        return ET.tostring(self.root, encoding="unicode")
