"""Per-task breakdowns computed from records: POPE by split, MMHal by question type, CHAIR per-class
hallucination frequency, reward distributions. Each takes [(run label, successful records)]."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Sequence

import numpy as np

from halbench.reports.kinds import POPE, SEP, StatTable
from halbench.reports.model import Table
from halbench.reports.plots import Chart, grouped_bars, histogram
from halbench.reports.stats import evaluate, full_sums

Runs = Sequence[tuple[str, list[dict[str, Any]]]]
TOP_CLASSES = 15


def _pct(num: float, den: float) -> str:
    return f"{100 * num / den:.2f}" if den else "—"


def pope_by_split(runs: Runs) -> Table:
    """Accuracy and F1 (x100) per POPE split, per run, with the same formulas as the summary."""
    splits = sorted({str(r.get("split")) for _, recs in runs for r in recs})
    header = ["split"] + [f"{lab}: {m}" for lab, _ in runs for m in ("n", "accuracy", "F1")]
    cells: dict[str, list[str]] = {s: [s] for s in splits}
    for _, recs in runs:
        table = StatTable.of(POPE, recs, splits)
        sums = full_sums(table.features)
        for s in splits:
            n = int(sums[f"n{SEP}{s}"][0])
            acc, f1 = (float(evaluate(table.stats[f"{s}/{m}"], sums)[0]) for m in ("accuracy", "f1"))
            cells[s] += [str(n)] + [f"{100 * v:.2f}" if n and np.isfinite(v) else "—" for v in (acc, f1)]
    return Table("POPE by split (×100)", header, list(cells.values()))


def mmhal_by_type(runs: Runs) -> Table:
    """Average rating and hallucination rate per MMHal question type (judge failures excluded)."""
    types = sorted({str(r.get("question_type", "")) for _, recs in runs for r in recs})
    cols = ("rated", "avg rating", "hallucination ×100")
    header = ["question type"] + [f"{lab}: {m}" for lab, _ in runs for m in cols]
    rows = []
    for t in types:
        row = [t or "(none)"]
        for _, recs in runs:
            rated = [r for r in recs if str(r.get("question_type", "")) == t and r.get("rating") is not None]
            avg = f"{sum(r['rating'] for r in rated) / len(rated):.2f}" if rated else "—"
            row += [str(len(rated)), avg, _pct(sum(r.get("hallucination") is True for r in rated), len(rated))]
        rows.append(row)
    return Table("MMHal by question type", header, rows, "judge failures (rating null) are excluded")


def chair_class_frequency(runs: Runs) -> Chart:
    """Share of captions (%) in which each class is hallucinated; the most frequent classes across runs."""
    freq = []
    for label, recs in runs:
        c = Counter(cls for r in recs for cls in {str(h) for h in r.get("hallucinated") or []})
        freq.append((label, c, max(1, len(recs))))
    top = Counter()
    for _, c, n in freq:
        for cls, k in c.items():
            top[cls] = max(top[cls], k / n)
    classes = [cls for cls, _ in sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CLASSES]]
    series = [(label, [100 * c[cls] / n for cls in classes]) for label, c, n in freq]
    tips = [[f"{label}: {cls} hallucinated in {c[cls]} of {n} captions ({100 * c[cls] / n:.1f}%)" for cls in classes]
            for label, c, n in freq]
    chart = grouped_bars(f"Most hallucinated classes (top {TOP_CLASSES})", classes, series, "% of captions", tips)
    if not classes:
        chart.note = "no hallucinated objects"
    return chart


def _token_rewards(recs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(rewards of hallucinated objects, rewards of correct objects)."""
    groups: dict[bool, list[float]] = defaultdict(list)
    for r in recs:
        for o in r.get("objects") or []:
            v = o.get("token_reward") if isinstance(o, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                groups[bool(o.get("hallucinated"))].append(float(v))
    return np.asarray(groups[True]), np.asarray(groups[False])


def auroc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(reward of a correct object > reward of a hallucinated one), ties counted half (Mann-Whitney U)."""
    if pos.size == 0 or neg.size == 0:
        return None
    s = np.sort(neg)
    below = np.searchsorted(s, pos, "left")
    ties = np.searchsorted(s, pos, "right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


def hallucination_correlation(recs: list[dict[str, Any]]) -> float | None:
    """Pearson r between sentence reward and the share of hallucinated objects, over captions with objects."""
    xs, ys = [], []
    for r in recs:
        objs = [o for o in r.get("objects") or [] if isinstance(o, dict)]
        if objs and _num(r.get("sentence_reward")):
            xs.append(float(r["sentence_reward"]))
            ys.append(sum(bool(o.get("hallucinated")) for o in objs) / len(objs))
    x, y = np.asarray(xs), np.asarray(ys)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def reward_summary(runs: Runs) -> tuple[Table, list[Chart]]:
    rows, charts = [], []
    for label, recs in runs:
        hal, ok = _token_rewards(recs)
        auc, r = auroc(ok, hal), hallucination_correlation(recs)
        rows.append([label, str(len(recs)), str(hal.size + ok.size), str(hal.size),
                     f"{hal.mean():.4f}" if hal.size else "—", f"{ok.mean():.4f}" if ok.size else "—",
                     f"{auc:.3f}" if auc is not None else "—", f"{r:+.3f}" if r is not None else "—"])
        charts.append(histogram(f"Token rewards: {label}", [("hallucinated", hal), ("correct", ok)], "token reward",
                                colours=(1, 2)))
    sent = [(label, [float(r["sentence_reward"]) for r in recs if _num(r.get("sentence_reward"))])
            for label, recs in runs]
    charts.insert(0, histogram("Sentence rewards", sent, "sentence reward"))
    table = Table("Token-level rewards", ["run", "captions", "objects", "hallucinated", "mean reward (hallucinated)",
                                          "mean reward (correct)", "AUROC", "r(sentence reward, hallucinated)"], rows,
                  "AUROC: how well the token reward ranks correct objects above hallucinated ones (0.5 = chance). "
                  "r: Pearson correlation of a caption's sentence reward with its share of hallucinated objects "
                  "(negative = the reward penalises hallucination).")
    return table, charts


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
