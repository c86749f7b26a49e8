"""Seed groups: several runs of one method (given the same label) summarised in one column.

The alignment papers report single runs without variances; a reader comparing methods needs to know how far
seeds disagree. For each group and each headline metric of a task:
- mean of the reported values (results.json) over the group's runs, and their spread: sample standard
  deviation (ddof=1) and min-max;
- the change against the base pooled over seeds, with a paired cluster bootstrap: sample ids are resampled,
  and each drawn id brings its base record and every seed's record (features summed over seeds, the base's
  multiplied by the number of seeds). Every report metric is a ratio of sums, so the pooled delta is the metric
  on all seeds' records together minus the base's, and its CI covers sampling noise over images; the spread
  column shows the seed noise.
Only samples every seed and the base answered enter the pooled delta (pairs by id).
"""

from __future__ import annotations

import math

import numpy as np

from halbench.reports.kinds import StatTable
from halbench.reports.metrics import MetricTable, RunTask, display_for
from halbench.reports.model import MetricRow, Table
from halbench.reports.stats import paired_deltas
from halbench.reports.views import pair_by_id


def group_indices(groups: list[str | None]) -> dict[str, list[int]]:
    """{group: run indices}, for groups of >= 2 runs that exclude the base (index 0)."""
    out: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is not None and i > 0:
            out.setdefault(g, []).append(i)
    return {g: ix for g, ix in out.items() if len(ix) > 1}


def _common_pairs(base: RunTask, members: list[RunTask]) -> tuple[list[dict], list[list[dict]]]:
    """Base records and, per member, its records, restricted to ids every member answered (base order)."""
    kind = base.table.kind
    pairs = [dict((str(a.get("id")), b) for a, b in pair_by_id(base.ok, m.ok) if kind.scored(a) and kind.scored(b))
             for m in members]
    ids = [str(a.get("id")) for a in base.ok if kind.scored(a) and all(str(a.get("id")) in p for p in pairs)]
    by_id = {str(a.get("id")): a for a in base.ok}
    return [by_id[i] for i in ids], [[p[i] for i in ids] for p in pairs]


def pooled_delta(table: MetricTable, name: str, members: list[int]) -> str:
    """'Δ -6.70 [-7.9, -5.5]' pooled over the members' records, or '' where no CI is recomputable."""
    base = table.runs[0]
    rts = [table.runs[i] for i in members]
    if base.table is None or any(rt.table is None for rt in rts):
        return ""
    match = table._match(base, name)
    if match is None or any(table._match(rt, name) != match for rt in rts):
        return ""
    kind = base.table.kind
    base_recs, member_recs = _common_pairs(base, rts)
    if len(base_recs) < 2:
        return ""
    groups = sorted({str(r.get(kind.group_by)) for r in base_recs}) if kind.group_by else None
    tb = StatTable.of(kind, base_recs, groups)
    tms = [StatTable.of(kind, recs, groups) for recs in member_recs]
    k = len(tms)
    summed = {c: sum(t.features[c] for t in tms) for c in tb.features}
    scaled = {c: v * k for c, v in tb.features.items()}
    res = paired_deltas(scaled, summed, {match[0]: tb.stats[match[0]]}, table.n_boot, table.seed)[match[0]]
    values = [v for v in (rt.metrics.get(name) for rt in table.runs) if v is not None and math.isfinite(v)]
    disp = display_for(name, values)
    return f"Δ {disp.delta(res.delta * match[1])} {disp.interval(res.ci, match[1])}".rstrip()


def _spread(name: str, vals: list[float], disp) -> str:
    if len(vals) < 2:
        return "—"
    sd = float(np.std(vals, ddof=1)) * disp.factor
    return f"± {sd:.{disp.decimals}f} (sd), {disp.value(min(vals))}–{disp.value(max(vals))}"


def group_table(table: MetricTable, rows: list[MetricRow], groups: dict[str, list[int]]) -> Table | None:
    if not groups:
        return None
    base = table.runs[0].label
    header = ["metric", "dir", base if base == "base" else f"{base} (base)"] + [f"{g} ({len(ix)} runs)" for g, ix in groups.items()]
    out = []
    for row in rows:
        values = [rt.metrics.get(row.name) for rt in table.runs]
        disp = display_for(row.name, [v for v in values if v is not None and math.isfinite(v)])
        cells = [row.name, row.arrow, row.cells[0].text]
        for ix in groups.values():
            vals = [values[i] for i in ix if values[i] is not None and math.isfinite(values[i])]
            if not vals:
                cells.append("—")
                continue
            mean = disp.value(float(np.mean(vals)))
            cells.append(f"{mean} {_spread(row.name, vals, disp)}; {pooled_delta(table, row.name, ix)}".rstrip("; "))
        out.append(cells)
    return Table("Seed groups: mean over runs, spread across seeds, change against the base pooled over seeds",
                 header, out, "Δ: the metric on every seed's records together minus the base's, paired cluster "
                 "bootstrap over sample ids (95% CI: image sampling noise); ± sd and min–max: seed-to-seed spread.")
