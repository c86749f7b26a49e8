"""Charts as plain geometry, drawn as inline SVG by templates/_plots.html.j2.

Why hand-made SVG and not matplotlib for the report's own charts: the numbers here are simple (lines,
step histograms, grouped bars); SVG output is byte-deterministic (golden tests), a few KB per chart, crisp
at any zoom, styled by the report's CSS (one palette, colour-blind safe: Okabe & Ito 2008), and every label
passes through jinja2 autoescape like all other text (matplotlib would hand us a blob of markup to trust).
It also keeps matplotlib's ~1 s import out of report rendering. PNGs that tasks already made with
matplotlib (reward-analysis artifacts) are embedded as they are.

Coordinates are computed here and formatted as numbers only; labels stay strings for the template.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

W, H = 520, 240
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 26, 40
MAX_POINTS = 800  # longer curves are thinned (every k-th point, last kept): a few KB per chart


@dataclass
class Chart:
    title: str
    width: int = W
    height: int = H
    grid: list[tuple[str, str, str, str]] = field(default_factory=list)  # x1 y1 x2 y2
    lines: list[tuple[str, int]] = field(default_factory=list)  # (points, series)
    rects: list[tuple[str, str, str, str, int, str]] = field(default_factory=list)  # x y w h series tooltip
    texts: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # x y text anchor css-class
    legend: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""


def _f(v: float) -> str:
    return f"{v:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (Heckbert's "nice numbers", Graphics Gems 1990)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 0.5  # a constant series (e.g. a fixed learning rate) sits mid-axis
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}"


class _Frame:
    """Maps data coordinates to the plot area and draws axes, grid and tick labels."""

    def __init__(self, chart: Chart, xr: tuple[float, float], yr: tuple[float, float], x_label: str,
                 y_label: str, x_ticks: bool = True, pad_b: int = PAD_B):
        self.xt = nice_ticks(*xr) if x_ticks else [xr[0], xr[1]]
        self.yt = nice_ticks(*yr)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]
        self.pw, self.ph = chart.width - PAD_L - PAD_R, chart.height - PAD_T - pad_b
        for y in self.yt:
            py = self.py(y)
            chart.grid.append((_f(PAD_L), _f(py), _f(PAD_L + self.pw), _f(py)))
            chart.texts.append((_f(PAD_L - 6), _f(py + 4), tick_label(y), "end", "tick"))
        if x_ticks:
            for x in self.xt:
                chart.texts.append((_f(self.px(x)), _f(PAD_T + self.ph + 16), tick_label(x), "middle", "tick"))
        if x_label:
            chart.texts.append((_f(PAD_L + self.pw / 2), _f(chart.height - 6), x_label, "middle", "axis"))
        if y_label:
            chart.texts.append((_f(4), _f(PAD_T - 10), y_label, "start", "axis"))

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / ((self.x1 - self.x0) or 1) * self.pw

    def py(self, y: float) -> float:
        return PAD_T + self.ph - (y - self.y0) / ((self.y1 - self.y0) or 1) * self.ph


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    keep = np.unique(np.append(np.arange(0, len(xs), math.ceil(len(xs) / MAX_POINTS)), len(xs) - 1))
    return xs[keep], ys[keep]


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], x_label: str,
               y_label: str = "") -> Chart:
    """One polyline per (label, xs, ys); non-finite points are dropped and counted in the note."""
    chart = Chart(title)
    clean, dropped = [], 0
    for label, xs, ys in series:
        x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        dropped += int((~ok).sum())
        clean.append((label, *_thin(x[ok], y[ok])))
    allx = np.concatenate([c[1] for c in clean]) if clean else np.zeros(0)
    ally = np.concatenate([c[2] for c in clean]) if clean else np.zeros(0)
    if allx.size == 0:
        chart.note = "no finite values to plot"
        return chart
    fr = _Frame(chart, (allx.min(), allx.max()), (ally.min(), ally.max()), x_label, y_label)
    for i, (label, x, y) in enumerate(clean):
        pts = " ".join(f"{_f(fr.px(a))},{_f(fr.py(b))}" for a, b in zip(x, y))
        chart.lines.append((pts, i))
        chart.legend.append((label, i))
    if dropped:
        chart.note = f"{dropped} non-finite value(s) (NaN/inf) not drawn"
    return chart


def histogram(title: str, groups: Sequence[tuple[str, Sequence[float]]], x_label: str, bins: int | None = None,
              colours: Sequence[int] | None = None) -> Chart:
    """Step histograms on shared bins, as fractions of each group (groups of different sizes compare).
    Default bins: 1.5 sqrt(n) clipped to [6, 30]; `colours` picks palette entries per group."""
    chart = Chart(title)
    data = [(lab, np.asarray(v, dtype=float)) for lab, v in groups]
    data = [(lab, v[np.isfinite(v)]) for lab, v in data]
    allv = np.concatenate([v for _, v in data]) if data else np.zeros(0)
    if allv.size == 0:
        chart.note = "no values to plot"
        return chart
    lo, hi = float(allv.min()), float(allv.max())
    bins = bins or int(np.clip(1.5 * math.sqrt(allv.size), 6, 30))
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    fracs = [(lab, np.histogram(v, edges)[0] / max(1, v.size)) for lab, v in data]
    fr = _Frame(chart, (lo, float(edges[-1])), (0.0, max(float(f.max()) for _, f in fracs)), x_label, "fraction")
    for i, (lab, f) in enumerate(fracs):
        pts = [(edges[0], 0.0)]
        for j, h in enumerate(f):
            pts += [(edges[j], h), (edges[j + 1], h)]
        pts.append((edges[-1], 0.0))
        colour = colours[i] if colours else i
        chart.lines.append((" ".join(f"{_f(fr.px(a))},{_f(fr.py(b))}" for a, b in pts), colour))
        chart.legend.append((f"{lab} (n={data[i][1].size})", colour))
    return chart


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
                 y_label: str, tooltips: Sequence[Sequence[str]] | None = None) -> Chart:
    """Vertical bars, one group per category and one bar per series; category labels rotated."""
    chart = Chart(title, height=H + 36)
    if not categories:
        chart.note = "nothing to plot"
        return chart
    top = max([max(v, default=0.0) for _, v in series] + [0.0]) or 1.0
    # x in [0, n categories]; extra bottom padding leaves room for the rotated category labels
    fr = _Frame(chart, (0.0, float(len(categories))), (0.0, top), "", y_label, x_ticks=False, pad_b=PAD_B + 46)
    slot = fr.pw / len(categories)
    bw = slot * 0.8 / max(1, len(series))
    for ci, cat in enumerate(categories):
        x0 = PAD_L + ci * slot + slot * 0.1
        for si, (_, vals) in enumerate(series):
            v = vals[ci]
            tip = tooltips[si][ci] if tooltips else f"{cat}: {tick_label(v)}"
            chart.rects.append((_f(x0 + si * bw), _f(fr.py(v)), _f(bw), _f(fr.py(0) - fr.py(v)), si, tip))
        chart.texts.append((_f(x0 + slot * 0.4), _f(fr.py(0) + 12), cat, "end", "cat"))
    chart.legend = [(lab, i) for i, (lab, _) in enumerate(series)]
    return chart
