"""Plain exports of a ReportData: comparison.json (machine-readable), and a Markdown / CSV table to paste
into a paper.

comparison.json holds, per task, the summary metric rows as the report shows them (display units: rates
×100, deltas in points, CIs as [lo, hi]) and, for caption tasks, the length comparisons with raw numbers
(rates in [0, 1]; reports/length_view.comparison_json). The tables list each task's headline metrics with
their direction (↑ higher is better, ↓ lower is better), one column per run: value, and for non-base runs
the change with its 95% CI; seed groups add one column per group.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from halbench.runs import atomic_write_json, atomic_write_text

from halbench.reports.model import Cell, MetricRow, ReportData

_INTERVAL = re.compile(r"^\[(-?[\d.]+|nan|inf), (-?[\d.]+|nan|inf)\]$")


def _interval(text: str) -> list[float] | None:
    m = _INTERVAL.match(text.strip()) if text else None
    return [float(m.group(1)), float(m.group(2))] if m else None


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cell_json(label: str, c: Cell) -> dict[str, Any]:
    return {"run": label, "value": _num(c.text), "ci": _interval(c.ci), "delta": _num(c.delta) if c.delta else None,
            "delta_ci": _interval(c.delta_ci), "p": c.p or None, "verdict": c.verdict}


def _row_json(row: MetricRow, labels: list[str]) -> dict[str, Any]:
    return {"metric": row.name, "direction": row.direction, "unit": row.unit,
            "cells": [_cell_json(lab, c) for lab, c in zip(labels, row.cells)], "note": row.note or None}


def comparison_data(data: ReportData) -> dict[str, Any]:
    labels = [r.label for r in data.runs]
    return {
        "title": data.title, "generator": data.generator, "generated": data.generated,
        "runs": [{"label": r.label, "path": r.path, "model_id": r.model_id, "fingerprint": r.fingerprint}
                 for r in data.runs],
        "base": labels[0] if labels else None,
        "units": "metrics: display units (rates x100, deltas in points); length_control: raw (rates in [0, 1])",
        "summary": [s for t in data.tasks for s in t.summary],
        "warnings": data.warnings,
        "tasks": {t.key: {"kind": t.kind, "metrics": [_row_json(r, labels) for r in t.metrics],
                          "length_control": t.comparisons} for t in data.tasks},
    }


def write_comparison(data: ReportData, path: str | Path) -> Path:
    atomic_write_json(Path(path), comparison_data(data))
    return Path(path)


def _cell_text(c: Cell) -> str:
    text = c.text + (f" {c.ci}" if c.ci and not c.delta else "")
    if c.delta:
        text += f" (Δ {c.delta}{' ' + c.delta_ci if c.delta_ci else ''}{'*' if c.significant else ''})"
    return text


def table_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Header and rows: task, metric, direction, unit, one column per run, then one per seed group."""
    groups: list[str] = []
    for t in data.tasks:
        if t.seed_groups:
            groups += [h for h in t.seed_groups.header[3:] if h not in groups]
    header = ["task", "metric", "dir", "unit"] + [r.label for r in data.runs] + groups
    rows = []
    for t in data.tasks:
        by_metric = {row[0]: dict(zip(t.seed_groups.header[3:], row[3:])) for row in t.seed_groups.rows} \
            if t.seed_groups else {}
        for row in t.metrics:
            g = by_metric.get(row.name, {})
            rows.append([t.key, row.name, row.arrow, row.unit.replace("×", "x")] + [_cell_text(c) for c in row.cells]
                        + [g.get(h, "") for h in groups])
    return header, rows


def markdown(data: ReportData) -> str:
    header, rows = table_rows(data)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    base = data.runs[0].label if data.runs else ""
    notes = [f"↑ higher is better, ↓ lower is better. Δ: change against {base} with its 95% paired bootstrap CI; "
             "* p < 0.05." if len(data.runs) > 1 else "↑ higher is better, ↓ lower is better; [95% bootstrap CI]."]
    notes += [s for t in data.tasks for s in t.summary]
    return "\n".join(lines) + "\n\n" + "\n".join(f"{n}  " for n in notes) + "\n"


def csv_text(data: ReportData) -> str:
    """Long format, one line per (task, metric, run): numbers in their own columns."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "metric", "direction", "unit", "run", "value", "ci_low", "ci_high", "delta",
                "delta_ci_low", "delta_ci_high", "p"])
    labels = [r.label for r in data.runs]
    for t in data.tasks:
        for row in t.metrics:
            for lab, c in zip(labels, row.cells):
                j = _cell_json(lab, c)
                ci, dci = j["ci"] or ["", ""], j["delta_ci"] or ["", ""]
                w.writerow([t.key, row.name, row.direction, row.unit.replace("×", "x"), lab, _blank(j["value"]),
                            *ci, _blank(j["delta"]), *dci, c.p])
    return buf.getvalue()


def _blank(v: Any) -> Any:
    return "" if v is None else v


def write_table(data: ReportData, path: str | Path) -> Path:
    """Markdown for .md, CSV for .csv (by suffix)."""
    p = Path(path)
    atomic_write_text(p, csv_text(data) if p.suffix.lower() == ".csv" else markdown(data))
    return p
