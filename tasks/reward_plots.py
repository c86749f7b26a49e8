"""Figures of the reward analyses (matplotlib's object API on the Agg canvas: no pyplot global state, no
display needed); PNG files the report embeds (reward_analysis.py card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from halbench.tasks.reward_stats import TEXT_METRICS, _label_mask, _scored


def _figure(n_panels: int, width: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, 3.0), dpi=110, layout="constrained")
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def plot_correlation(records: Sequence[dict[str, Any]], metrics: dict[str, float], path: Path) -> None:
    """Analysis 1 figure: sentence reward (x) vs each text metric (y), one panel per metric."""
    rows = [r for r in _scored(records) if r.get("bleu1") is not None]
    fig, axes = _figure(len(TEXT_METRICS))
    x = [r["sentence_reward"] for r in rows]
    for ax, m in zip(axes, TEXT_METRICS):
        ax.scatter(x, [r[m] for r in rows], s=8, alpha=0.6)
        ax.set_xlabel("sentence-level CLIP reward")
        ax.set_ylabel(m)
        ax.set_title(f"Pearson {metrics.get(f'pearson_{m}', float('nan')):.2f}  "
                     f"Spearman {metrics.get(f'spearman_{m}', float('nan')):.2f}", fontsize=8)
    fig.savefig(path)


def _hist_pair(ax, values: np.ndarray, y: np.ndarray, labels: tuple[str, str], title: str) -> None:
    bins = np.histogram_bin_edges(values, bins=20) if values.size else 10
    for mask, lab, color in ((~y, labels[0], "tab:blue"), (y, labels[1], "tab:red")):
        ax.hist(values[mask], bins=bins, alpha=0.55, density=True, color=color, label=f"{lab} (n={mask.sum()})")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("CLIP reward")
    ax.legend(fontsize=7)


def plot_separability(table: dict[str, np.ndarray], metrics: dict[str, float], path: Path) -> None:
    """Analysis 2 figure: reward histograms of correct vs hallucinated objects, token- and sentence-level."""
    fig, axes = _figure(2, width=4.0)
    for ax, k in zip(axes, ("token", "sentence")):
        a = metrics.get(f"auroc_{k}", float("nan"))
        lo, hi = metrics.get(f"auroc_{k}_ci_lo", float("nan")), metrics.get(f"auroc_{k}_ci_hi", float("nan"))
        _hist_pair(ax, table[k], table["hallucinated"], ("correct", "hallucinated"),
                   f"{k}-level: AUROC {a:.3f} [{lo:.3f}, {hi:.3f}]")
    fig.savefig(path)


def plot_shift(before: dict[str, np.ndarray], after: dict[str, np.ndarray], metrics: dict[str, float],
               path: Path, labels: tuple[str, str] = ("before", "after")) -> None:
    """Analysis 3 figure (FiSAO Fig. 4 style): token-level object rewards of two runs, by object label."""
    fig, axes = _figure(3)
    for ax, lab in zip(axes, ("all", "correct", "hallucinated")):
        vals = np.concatenate([before["token"][_label_mask(before, lab)], after["token"][_label_mask(after, lab)]])
        bins = np.histogram_bin_edges(vals, bins=20) if vals.size else 10
        for t, name, color in ((before, labels[0], "tab:gray"), (after, labels[1], "tab:green")):
            v = t["token"][_label_mask(t, lab)]
            ax.hist(v, bins=bins, alpha=0.55, density=True, color=color, label=f"{name} (n={v.size})")
        ax.set_title(f"{lab} objects: mean shift {metrics.get(f'shift_mean_{lab}', float('nan')):+.3f}", fontsize=8)
        ax.set_xlabel("token-level CLIP reward")
        ax.legend(fontsize=7)
    fig.savefig(path)
