"""Statistics of the reward analyses (tasks/reward_analysis.py card): AUROC, correlations, bootstrap CIs, and
the three analyses as pure functions of records (correlation, separability, shift).

Pure numpy/scipy; no model, no files. reward_analysis.py re-exports every name here (its public API).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

TEXT_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL")


# -- statistics (pure numpy/scipy) -----------------------------------------------------------------------
def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for positive `labels` (Mann-Whitney U; ties count 1/2).
    nan when either class is empty."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(y))


def bootstrap(stat: Callable[[np.ndarray], Any], n_units: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """stat(resampled unit indices) for n_boot resamples with replacement: array [n_boot, ...]."""
    rng = np.random.default_rng(seed)
    return np.array([stat(rng.integers(0, n_units, n_units)) for _ in range(n_boot)], dtype=float)


def percentile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval over the finite bootstrap values (nan, nan when there are none)."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# -- analyses over records (pure functions; the task and reward_shift call them) ---------------------------
def _scored(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with a caption and rewards (no generation error, no reward error)."""
    return [r for r in records if r.get("error") is None and r.get("reward_error") is None
            and r.get("sentence_reward") is not None]


def correlation_metrics(records: Sequence[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Analysis 1: Pearson/Spearman r (+95% CI) of sentence reward vs each text metric."""
    rows = [r for r in _scored(records) if r.get("bleu1") is not None]
    out: dict[str, float] = {"n_correlation": len(rows)}
    if len(rows) < 3:
        return out
    reward = np.array([r["sentence_reward"] for r in rows])
    for m in TEXT_METRICS:
        y = np.array([r[m] for r in rows])
        for name, fn in (("pearson", pearson), ("spearman", spearman)):
            out[f"{name}_{m}"] = fn(reward, y)
            boot = bootstrap(lambda idx: fn(reward[idx], y[idx]), len(rows), n_boot, seed)
            out[f"{name}_{m}_ci_lo"], out[f"{name}_{m}_ci_hi"] = percentile_ci(boot)
    return out


def object_table(records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Flatten object mentions: caption index, hallucinated label, token / sentence / response reward."""
    cols: dict[str, list] = {"caption": [], "hallucinated": [], "token": [], "sentence": [], "response": []}
    for i, r in enumerate(_scored(records)):
        for o in r.get("objects", []):
            cols["caption"].append(i)
            cols["hallucinated"].append(bool(o["hallucinated"]))
            cols["token"].append(o["token_reward"])
            cols["sentence"].append(o["sentence_reward"])
            cols["response"].append(r["sentence_reward"])
    return {k: np.asarray(v, dtype=bool if k == "hallucinated" else float) for k, v in cols.items()}


def _cluster_index(caption: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(caption == c) for c in range(int(caption.max()) + 1)] if caption.size else []


def separability_metrics(table: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Analysis 2: AUROC of -reward for 'hallucinated', per granularity, with cluster-bootstrap CIs."""
    y = table["hallucinated"]
    out: dict[str, float] = {"n_objects": int(y.size), "n_hallucinated_objects": int(y.sum())}
    kinds = ("token", "sentence", "response")
    for k in kinds:
        for lab, mask in (("hallucinated", y), ("correct", ~y)):
            out[f"{k}_reward_mean_{lab}"] = float(table[k][mask].mean()) if mask.any() else float("nan")
    clusters = _cluster_index(table["caption"])
    if not clusters:  # no object mentioned anywhere: every AUROC is undefined (reported as null)
        nan = float("nan")
        out.update({f"auroc_{k}{s}": nan for k in kinds for s in ("", "_ci_lo", "_ci_hi")})
        out.update({"auroc_diff_token_minus_sentence": nan, "auroc_diff_ci_lo": nan, "auroc_diff_ci_hi": nan,
                    "token_beats_sentence": 0})
        return out

    def stat(idx: np.ndarray) -> list[float]:
        sel = np.concatenate([clusters[i] for i in idx])
        return [auroc(-table[k][sel], y[sel]) for k in kinds]

    boot = bootstrap(stat, len(clusters), n_boot, seed)
    for j, k in enumerate(kinds):
        out[f"auroc_{k}"] = auroc(-table[k], y)
        out[f"auroc_{k}_ci_lo"], out[f"auroc_{k}_ci_hi"] = percentile_ci(boot[:, j])
    out["auroc_diff_token_minus_sentence"] = out["auroc_token"] - out["auroc_sentence"]
    lo, hi = percentile_ci(boot[:, 0] - boot[:, 1])
    out["auroc_diff_ci_lo"], out["auroc_diff_ci_hi"] = lo, hi
    out["token_beats_sentence"] = int(out["auroc_token_ci_lo"] > out["auroc_sentence_ci_hi"])
    return out


def _boot_mean(table: dict[str, np.ndarray], mask: np.ndarray, rng: np.random.Generator) -> float:
    """Mean token reward of the masked objects in one cluster-bootstrap resample of the captions."""
    clusters = _cluster_index(table["caption"])
    sel = np.concatenate([clusters[i] for i in rng.integers(0, len(clusters), len(clusters))])
    vals = table["token"][sel][mask[sel]]
    return float(vals.mean()) if vals.size else float("nan")


def shift_metrics(before: dict[str, np.ndarray], after: dict[str, np.ndarray], n_boot: int = 1000,
                  seed: int = 0) -> dict[str, float]:
    """Analysis 3: change of token-level object rewards between two runs (all / hallucinated / correct).
    Mean shift CI: captions of each run resampled independently (cluster bootstrap); KS statistic on objects."""
    from scipy.stats import ks_2samp

    out: dict[str, float] = {}
    for t, when in ((before, "before"), (after, "after")):
        frac = float(t["hallucinated"].mean()) if t["token"].size else float("nan")
        out[f"shift_hallucinated_fraction_{when}"] = frac
    rng = np.random.default_rng(seed)
    for lab in ("all", "hallucinated", "correct"):
        mb, ma = (_label_mask(t, lab) for t in (before, after))
        a, b = before["token"][mb], after["token"][ma]
        out[f"shift_n_{lab}_before"], out[f"shift_n_{lab}_after"] = int(a.size), int(b.size)
        if a.size == 0 or b.size == 0:
            continue
        out[f"shift_mean_{lab}"] = float(b.mean() - a.mean())
        boot = [_boot_mean(after, ma, rng) - _boot_mean(before, mb, rng) for _ in range(n_boot)]
        out[f"shift_mean_{lab}_ci_lo"], out[f"shift_mean_{lab}_ci_hi"] = percentile_ci(np.array(boot))
        out[f"shift_ks_{lab}"] = float(ks_2samp(a, b).statistic)
    return out


def _label_mask(table: dict[str, np.ndarray], label: str) -> np.ndarray:
    y = table["hallucinated"]
    return {"all": np.ones_like(y), "hallucinated": y, "correct": ~y}[label]
