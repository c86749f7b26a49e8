"""Metric rows of the summary: reported values, 95% CIs, deltas against the base run and paired tests.

Values always come from results.json (the numbers of record). Intervals and tests come from the per-sample
records, and only for metrics whose recomputation matches the reported value (kinds.StatTable.match).
Deltas are other - base, in display units (rates x100, i.e. percentage points).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from halbench.reports.kinds import Kind, StatTable
from halbench.reports.model import Cell, MetricRow
from halbench.reports.stats import (Interval, PairedResult, bootstrap_sums, evaluate, mcnemar, paired_deltas, percentile_ci,
                    unpaired_deltas)
from halbench.reports.views import pair_by_id

ARROWS = {"higher": "↑", "lower": "↓"}
COUNT_KEYS = ("n_samples", "n_errors")
#: name tokens of metrics that are rates in [0, 1], shown x100 (TEAM.md: "display x100 is the report's job")
_RATE_TOKENS = {"acc", "accuracy", "precision", "recall", "f1", "ratio", "rate", "chair", "chairs", "chairi",
                "fraction", "proportion"}


@dataclass
class RunTask:
    """One run's side of one task: its results.json entry and its records."""

    label: str
    run_dir: Path
    entry: dict[str, Any] | None
    records: list[dict[str, Any]]
    ok: list[dict[str, Any]]
    table: StatTable | None  # None: no usable records for this kind
    metrics: dict[str, float] = field(default_factory=dict)
    _boot: dict[str, np.ndarray] | None = None
    _pairs: dict[str, list] = field(default_factory=dict)

    def pairs(self, base: "RunTask") -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(base record, this run's record) for samples both runs answered, by id (cached per base)."""
        if base.label not in self._pairs:
            self._pairs[base.label] = pair_by_id(base.ok, self.ok)
        return self._pairs[base.label]

    def boot(self, n_boot: int, seed: int) -> dict[str, np.ndarray]:
        if self._boot is None:
            self._boot = bootstrap_sums(self.table.features if self.table else {}, n_boot, seed)
        return self._boot


def flatten_metrics(metrics: Any) -> dict[str, float | None]:
    """Numeric metrics, one nested level flattened as "parent.child"; None (a metric the task could not
    define, e.g. a rate with an empty denominator) is kept and shown as "—"; booleans and strings dropped."""
    out: dict[str, float | None] = {}
    if not isinstance(metrics, dict):
        return out
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items() if _is_num(v2)})
        elif (v is None or _is_num(v)) and k not in COUNT_KEYS:
            out[k] = v
    return out


def _is_num(v: Any) -> bool:
    """Numbers, NaN and inf included: a metric that came out NaN is shown as such, not hidden."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Display:
    factor: float
    unit: str
    decimals: int

    def value(self, v: float) -> str:
        return f"{v * self.factor:.{self.decimals}f}"

    def delta(self, d: float) -> str:
        return f"{d * self.factor:+.{self.decimals}f}"

    def interval(self, ci: Interval | None, scale: float = 1.0) -> str:
        if ci is None:
            return ""
        return f"[{self.value(ci.lo * scale)}, {self.value(ci.hi * scale)}]"


def display_for(name: str, values: list[float]) -> Display:
    tokens = set(re.split(r"[_/.\-\s]+", name.lower()))
    if tokens & _RATE_TOKENS and all(0.0 <= v <= 1.0 for v in values):
        return Display(100.0, "×100", 2)
    if all(isinstance(v, int) for v in values):
        return Display(1.0, "", 0)
    top = max((abs(v) for v in values), default=0.0)
    return Display(1.0, "", 1 if top >= 100 else 3 if top >= 1 else 4)


def _verdict(d: float, direction: str, disp: Display) -> str:
    if direction not in ARROWS:
        return "none"
    if round(d * disp.factor, disp.decimals) == 0:
        return "same"
    return "better" if (d > 0) == (direction == "higher") else "worse"


class MetricTable:
    """Builds MetricRows for one task across runs (index 0 is the base)."""

    def __init__(self, kind: Kind | None, runs: list[RunTask], n_boot: int, seed: int):
        self.kind, self.runs, self.n_boot, self.seed = kind, runs, n_boot, seed
        self._paired: dict[int, tuple[dict[str, PairedResult], Any]] = {}

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for rt in self.runs:
            seen.update(dict.fromkeys(rt.metrics))
        return list(seen)

    def rows(self) -> list[MetricRow]:
        return [self.row(name) for name in self.names()]

    def _direction(self, name: str) -> str:
        """The declared direction; a per-group metric ("random/accuracy") inherits its base metric's."""
        for candidate in (name, name.rsplit("/", 1)[-1]):
            for rt in self.runs:
                d = ((rt.entry or {}).get("directions") or {}).get(candidate)
                if d in ("higher", "lower", "none"):
                    return d
        return "none"

    def _match(self, rt: RunTask, name: str) -> tuple[str, float] | None:
        v = rt.metrics.get(name)
        if rt.table is None or v is None or not math.isfinite(v):
            return None
        return rt.table.match(name, v)

    def _common_matches(self, name: str, matches: list) -> list:
        """One stat for every run where one reproduces them all: a pooled and a mean-over-splits F1 can both
        match a run within rounding, and a paired delta needs the same stat on both sides."""
        cands = []
        for rt, m in zip(self.runs, matches):
            v = rt.metrics.get(name)
            cands.append(rt.table.matches(name, v) if m is not None else None)
        present = [c for c in cands if c is not None]
        if len(present) < 2:
            return matches
        common = next((s for s in present[0] if all(s in c for c in present[1:])), None)
        return [common if c is not None and common is not None else m for c, m in zip(cands, matches)]

    def row(self, name: str) -> MetricRow:
        values = [rt.metrics.get(name) for rt in self.runs]
        disp = display_for(name, [v for v in values if v is not None and math.isfinite(v)])
        direction = self._direction(name)
        matches = self._common_matches(name, [self._match(rt, name) for rt in self.runs])
        cells = [self._cell(i, name, values, matches, disp, direction) for i in range(len(self.runs))]
        note = ""
        unmatched = any(v is not None and m is None for v, m in zip(values, matches))
        if self.kind is not None and disp.decimals and unmatched:  # counts need no interval
            note = "no CI: not recomputable from the per-sample records"
        return MetricRow(name, ARROWS.get(direction, "·"), direction, disp.unit, cells, note)

    def _cell(self, i: int, name: str, values, matches, disp: Display, direction: str) -> Cell:
        v, m = values[i], matches[i]
        if v is None:
            return Cell("—")
        if not math.isfinite(v):
            return Cell(str(v))  # "nan" / "inf": no interval, no delta
        cell = Cell(disp.value(v))
        if m is not None:
            draws = evaluate(self.runs[i].table.stats[m[0]], self.runs[i].boot(self.n_boot, self.seed))
            cell.ci = disp.interval(percentile_ci(draws), m[1])
        if i == 0 or values[0] is None or not math.isfinite(values[0]):
            return cell
        d = v - values[0]
        cell.delta, cell.verdict = disp.delta(d), _verdict(d, direction, disp)
        if m is not None and matches[0] is not None and m == matches[0]:
            self._paired_test(i, m, cell, disp)
        return cell

    def _paired_test(self, i: int, match: tuple[str, float], cell: Cell, disp: Display) -> None:
        results, correct = self._pairs(i)
        res = results.get(match[0])
        if res is None:
            return
        cell.delta_ci = disp.interval(res.ci, match[1])
        p, test = res.p, res.test
        mask = self._mcnemar_mask(match[0], correct)
        if mask is not None:  # POPE answers pair up as right/wrong: McNemar's exact test
            p, test = mcnemar(correct[0][mask], correct[1][mask]).p, "McNemar exact"
        if p is not None:
            cell.p = f"p{format_p(p, self.n_boot if 'bootstrap' in test else None)} ({test})"
            cell.significant = p < 0.05

    def _mcnemar_mask(self, stat: str, correct) -> np.ndarray | None:
        """Which pairs a POPE accuracy stat covers: all ("accuracy", "accuracy@mean") or one split."""
        if self.kind.name != "pope" or correct is None:
            return None
        base_correct, _, groups = correct
        if stat in ("accuracy", "accuracy@mean"):
            return np.ones(len(base_correct), bool)
        if stat.endswith("/accuracy"):
            return groups == stat[: -len("/accuracy")]
        return None

    def _pairs(self, i: int):
        """Paired (or, without pairs, unpaired) bootstrap of every stat, and POPE's paired correctness."""
        if i not in self._paired:
            base, other, kind = self.runs[0], self.runs[i], self.kind
            pairs = [(a, b) for a, b in other.pairs(base) if kind.scored(a) and kind.scored(b)]
            if len(pairs) >= 2:
                groups = None
                if kind.group_by:
                    groups = sorted({str(r.get(kind.group_by)) for pair in pairs for r in pair})
                ta = StatTable.of(kind, [a for a, _ in pairs], groups)
                tb = StatTable.of(kind, [b for _, b in pairs], groups)
                res = paired_deltas(ta.features, tb.features, ta.stats, self.n_boot, self.seed)
                correct = None
                if "correct" in ta.features:  # POPE: paired right/wrong answers and their split
                    labels = np.array([str(a.get(kind.group_by)) for a, _ in pairs], dtype=object)
                    correct = (ta.features["correct"].astype(bool), tb.features["correct"].astype(bool), labels)
            else:
                common = {k: f for k, f in base.table.stats.items() if k in other.table.stats}
                res, correct = unpaired_deltas(base.table.features, other.table.features, common, self.n_boot,
                                               self.seed), None
            self._paired[i] = (res, correct)
        return self._paired[i]


def format_p(p: float, n_boot: int | None) -> str:
    if n_boot and p <= 1 / n_boot:  # no bootstrap draw crossed zero: p is below the resolution 1/B
        return f"<{1 / n_boot:.3g}"
    return f"={p:.3f}" if p >= 0.001 else f"={p:.1e}"
