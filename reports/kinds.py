"""What the report knows about each task's per-sample records (fields listed in docs/TEAM.md).

For each known task kind: the record fields it needs, the per-sample columns ("features") it sums, and its
metrics written as ratios of those sums, so stats.py can bootstrap them. A metric from results.json gets a
CI only when recomputing it from the records reproduces the reported value (`match_metric`): the report
never shows an interval that belongs to a differently defined number. Unknown tasks have no kind: the
report shows their results.json metrics and artifacts only.

Definitions (parity with the official scripts; display x100 is render-time only):
- POPE (RUCAIBox/POPE evaluate.py): accuracy = correct/n; precision = TP/(pred yes); recall = TP/(label yes);
  F1 = 2TP/(pred yes + label yes) (the same number as 2PR/(P+R)); yes_ratio = (pred yes)/n.
- CHAIR / Object HalBench (LisaAnne/Hallucination chair.py, OPERA's copy): CHAIR_s = captions with >= 1
  hallucinated mention / captions; CHAIR_i = hallucinated mentions / mentions; recall = ground-truth objects
  mentioned / ground-truth objects (per-caption sets, summed); len = words / captions.
- MMHal (llava-rlhf eval_gpt4.py): average score = sum(rating)/rated; hallucination rate = hallucinated/judged;
  judge failures (rating null) are excluded from both, never scored as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .stats import StatFn, evaluate, full_sums

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    name: str
    required: tuple[str, ...]
    features: Callable[[Records], dict[str, np.ndarray]]
    stats: Mapping[str, StatFn]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, metric: str) -> str | None:
        """The stat a results.json metric name refers to ("acc", "pope_accuracy" -> "accuracy"), or None."""
        names = [metric.lower()]
        for prefix in (f"{self.name}_", f"{self.name}/", f"{self.name}."):
            if names[0].startswith(prefix):
                names.append(names[0][len(prefix):])
        for m in names:
            m = self.aliases.get(m, m)
            if m in self.stats:
                return m
        return None


def _arr(values, dtype=float) -> np.ndarray:
    return np.fromiter(values, dtype=dtype)


def _pope_features(recs: Records) -> dict[str, np.ndarray]:
    pred = _arr((r["pred"] == "yes" for r in recs), bool)
    label = _arr((r["label"] == "yes" for r in recs), bool)
    return {"n": np.ones(len(recs)), "correct": _arr(bool(r["correct"]) for r in recs),
            "tp": (pred & label).astype(float), "pred_yes": pred.astype(float), "label_yes": label.astype(float)}


POPE = Kind(
    "pope", ("pred", "label", "correct"), _pope_features,
    {"accuracy": lambda s: s["correct"] / s["n"], "precision": lambda s: s["tp"] / s["pred_yes"],
     "recall": lambda s: s["tp"] / s["label_yes"], "f1": lambda s: 2 * s["tp"] / (s["pred_yes"] + s["label_yes"]),
     "yes_ratio": lambda s: s["pred_yes"] / s["n"]},
    {"acc": "accuracy", "prec": "precision", "f1_score": "f1", "yes_rate": "yes_ratio", "yes_proportion": "yes_ratio"},
)


def _chair_features(recs: Records) -> dict[str, np.ndarray]:
    return {"n": np.ones(len(recs)), "hal_caps": _arr(bool(r["hallucinated"]) for r in recs),
            "hal": _arr(len(r["hallucinated"]) for r in recs), "mentions": _arr(len(r["mentioned"]) for r in recs),
            "recalled": _arr(len(set(r["correct_mentions"])) for r in recs),
            "gt": _arr(len(set(r["gt_objects"])) for r in recs), "words": _arr(r["n_words"] for r in recs)}


_CHAIR_STATS: dict[str, StatFn] = {
    "chair_s": lambda s: s["hal_caps"] / s["n"], "chair_i": lambda s: s["hal"] / s["mentions"],
    "recall": lambda s: s["recalled"] / s["gt"], "len": lambda s: s["words"] / s["n"]}
_CHAIR_ALIASES = {"chairs": "chair_s", "chairi": "chair_i", "avg_len": "len", "length": "len", "mean_len": "len"}
_CHAIR_FIELDS = ("mentioned", "hallucinated", "correct_mentions", "gt_objects", "n_words")
CHAIR = Kind("chair", _CHAIR_FIELDS, _chair_features, _CHAIR_STATS, _CHAIR_ALIASES)
OBJECT_HALBENCH = Kind("object_halbench", _CHAIR_FIELDS, _chair_features, _CHAIR_STATS, _CHAIR_ALIASES)


def _mmhal_features(recs: Records) -> dict[str, np.ndarray]:
    return {"rated": _arr(r["rating"] is not None for r in recs),
            "rating": _arr((r["rating"] or 0) for r in recs),
            "judged": _arr(r["hallucination"] is not None for r in recs),
            "hal": _arr(r["hallucination"] is True for r in recs)}


MMHAL = Kind(
    "mmhal", ("rating", "hallucination"), _mmhal_features,
    {"avg_score": lambda s: s["rating"] / s["rated"], "hallucination_rate": lambda s: s["hal"] / s["judged"]},
    {"average_score": "avg_score", "mean_rating": "avg_score", "avg_rating": "avg_score", "score": "avg_score",
     "rating": "avg_score", "mean_score": "avg_score", "hal_rate": "hallucination_rate",
     "hallucination": "hallucination_rate"},
)


def _reward_features(recs: Records) -> dict[str, np.ndarray]:
    return {"n": np.ones(len(recs)), "sentence_reward": _arr(float(r["sentence_reward"]) for r in recs)}


REWARD = Kind(
    "reward_analysis", ("sentence_reward", "objects"), _reward_features,
    {"mean_sentence_reward": lambda s: s["sentence_reward"] / s["n"]},
    {"sentence_reward": "mean_sentence_reward", "avg_sentence_reward": "mean_sentence_reward",
     "sentence_reward_mean": "mean_sentence_reward"},
)

KINDS: dict[str, Kind] = {k.name: k for k in (POPE, CHAIR, OBJECT_HALBENCH, MMHAL, REWARD)}

#: scales at which a recomputed value may be reported (official CHAIR prints len as 0.01 x words)
_SCALES = (1.0, 100.0, 0.01)


def match_metric(kind: Kind, name: str, reported: float, features: dict[str, np.ndarray]) -> tuple[str, float] | None:
    """(canonical stat, scale) when `reported` equals the stat recomputed from records, else None."""
    canon = kind.canonical(name)
    if canon is None or not features or not len(next(iter(features.values()))):
        return None
    value = float(evaluate(kind.stats[canon], full_sums(features))[0])
    if not np.isfinite(value):
        return None
    for scale in _SCALES:
        if abs(value * scale - reported) <= 1e-4 * max(1.0, abs(reported)):
            return canon, scale
    return None


def first_missing(kind: Kind, recs: Records) -> tuple[int, str] | None:
    """(index, field) of the first successful record lacking a field this kind needs, else None."""
    for i, r in enumerate(recs):
        for f in kind.required:
            if f not in r:
                return i, f
    return None


def is_ok(record: dict[str, Any]) -> bool:
    """A successfully generated (and therefore scored) record."""
    return record.get("error") is None
