"""What the report knows about each task's per-sample records (fields listed in docs/TEAM.md).

For each known task kind: which records are scored, the record fields it needs, the per-sample columns
("features") it sums, and its metrics written as ratios of those sums, so stats.py can bootstrap them. A
metric from results.json gets a CI only when recomputing it from the records reproduces the reported value
(`StatTable.match`): the report never shows an interval that belongs to a differently defined number.
Unknown tasks have no kind: the report shows their results.json metrics and artifacts only.

Definitions (the tasks' own, which follow the official scripts; display x100 is render-time only):
- POPE (tasks/pope.py, RUCAIBox/POPE evaluate.py): per split, accuracy = correct/n; precision = TP/(TP+FP);
  recall = TP/(TP+FN); F1 = 2TP/(2TP+FP+FN) (= 2PR/(P+R)); yes_ratio = (TP+FP)/n; an unparsed ("other")
  answer is wrong in accuracy and in no other count (the official parser never yields one). Keyed
  "<split>/<metric>"; the top-level metric is the mean over splits (LLaVA-1.5's convention), or pooled.
- CHAIR (tasks/chair.py, OPERA chair.py): CHAIR_s = captions with >= 1 hallucinated mention / captions;
  CHAIR_i = hallucinated mentions / mentions; recall = covered GT objects / GT objects (summed); len =
  words / captions; chair_s_refine = hallucinated captions / captions with a mention. Skipped (empty)
  captions are not scored.
- Object HalBench (tasks/object_halbench.py, RLAIF-V): the CHAIR quantities under the reference's names
  (response_hallucination_rate = chair_s_refine, ..._all = chair_s, object_hallucination_rate = chair_i) and
  avg_len = mean of len(caption.strip().split(" ")); judge failures are not scored.
- MMHal (tasks/mmhal.py, eval_gpt_mmhal.py): avg_score = sum(rating)/rated, hallucination_rate = rated < 3 /
  rated, score_<question_type>; judge failures (rating null) are excluded, never scored as 0.
- reward_analysis: the report draws its own distributions (breakdowns.py) and embeds the task's plots;
  the task's AUROC/correlation metrics are its own bootstrap, so the report adds no interval to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from halbench.reports.stats import StatFn, evaluate, full_sums

Records = list[dict[str, Any]]
Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Kind:
    name: str
    required: tuple[str, ...]
    features: Callable[[Records], Columns]
    stats: Mapping[str, StatFn]
    aliases: Mapping[str, str] = field(default_factory=dict)
    scored: Callable[[dict[str, Any]], bool] = lambda r: True  # successful records that count in metrics
    group_by: str | None = None  # record field of sub-groups (POPE split, MMHal question type)
    group_metric: Callable[[str, str], str | None] = lambda group, stat: None  # results.json name, or None

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


def _pope_features(recs: Records) -> Columns:
    pred = _arr((r["pred"] == "yes" for r in recs), bool)
    answered = _arr((r["pred"] in ("yes", "no") for r in recs), bool)
    label = _arr((r["label"] == "yes" for r in recs), bool)
    return {"n": np.ones(len(recs)), "correct": _arr(bool(r["correct"]) for r in recs),
            "tp": (pred & label).astype(float), "pred_yes": pred.astype(float),
            "tp_fn": (label & answered).astype(float)}  # "other" answers are in no rate but accuracy


POPE = Kind(
    "pope", ("pred", "label", "correct"), _pope_features,
    {"accuracy": lambda s: s["correct"] / s["n"], "precision": lambda s: s["tp"] / s["pred_yes"],
     "recall": lambda s: s["tp"] / s["tp_fn"], "f1": lambda s: 2 * s["tp"] / (s["pred_yes"] + s["tp_fn"]),
     "yes_ratio": lambda s: s["pred_yes"] / s["n"]},
    {"acc": "accuracy", "prec": "precision", "f1_score": "f1", "yes_rate": "yes_ratio", "yes_proportion": "yes_ratio"},
    group_by="split", group_metric=lambda g, stat: f"{g}/{stat}",
)


def _chair_features(recs: Records) -> Columns:
    return {"n": np.ones(len(recs)), "hal_caps": _arr(bool(r["hallucinated"]) for r in recs),
            "hal": _arr(len(r["hallucinated"]) for r in recs), "mentions": _arr(len(r["mentioned"]) for r in recs),
            "with_mentions": _arr(bool(r["mentioned"]) for r in recs),
            "recalled": _arr(len(set(r["correct_mentions"])) for r in recs),
            "gt": _arr(len(set(r["gt_objects"])) for r in recs), "words": _arr(r["n_words"] for r in recs),
            "space_words": _arr(len(str(r.get("caption", "")).strip().split(" ")) for r in recs)}


_CHAIR_STATS: dict[str, StatFn] = {
    "chair_s": lambda s: s["hal_caps"] / s["n"], "chair_i": lambda s: s["hal"] / s["mentions"],
    "recall": lambda s: s["recalled"] / s["gt"], "len": lambda s: s["words"] / s["n"],
    "chair_s_refine": lambda s: s["hal_caps"] / s["with_mentions"]}
_CHAIR_FIELDS = ("mentioned", "hallucinated", "correct_mentions", "gt_objects", "n_words")
CHAIR = Kind("chair", _CHAIR_FIELDS, _chair_features, _CHAIR_STATS,
             {"chairs": "chair_s", "chairi": "chair_i", "avg_len": "len", "length": "len", "mean_len": "len"},
             scored=lambda r: not r.get("skipped"))
OBJECT_HALBENCH = Kind(
    "object_halbench", _CHAIR_FIELDS, _chair_features,
    _CHAIR_STATS | {"avg_len": lambda s: s["space_words"] / s["n"]},
    {"response_hallucination_rate": "chair_s_refine", "response_hallucination_rate_all": "chair_s",
     "object_hallucination_rate": "chair_i", "chairs": "chair_s", "chairi": "chair_i"},
    scored=lambda r: not r.get("skipped") and not r.get("judge_error"))


def _mmhal_features(recs: Records) -> Columns:
    return {"rated": _arr(r["rating"] is not None for r in recs),
            "rating": _arr((r["rating"] or 0) for r in recs),
            "hal": _arr(r["rating"] is not None and r["hallucination"] is True for r in recs)}


MMHAL = Kind(
    "mmhal", ("rating", "hallucination"), _mmhal_features,
    {"avg_score": lambda s: s["rating"] / s["rated"], "hallucination_rate": lambda s: s["hal"] / s["rated"]},
    {"average_score": "avg_score", "mean_rating": "avg_score", "avg_rating": "avg_score", "mean_score": "avg_score",
     "hal_rate": "hallucination_rate"},
    group_by="question_type", group_metric=lambda g, stat: f"score_{g}" if stat == "avg_score" else None,
)

REWARD = Kind(
    "reward_analysis", ("sentence_reward", "objects"),
    lambda recs: {"n": np.ones(len(recs)), "sentence_reward": _arr(float(r["sentence_reward"]) for r in recs)},
    {"mean_sentence_reward": lambda s: s["sentence_reward"] / s["n"]},
    scored=lambda r: r.get("reward_error") is None and isinstance(r.get("sentence_reward"), (int, float)),
)

KINDS: dict[str, Kind] = {k.name: k for k in (POPE, CHAIR, OBJECT_HALBENCH, MMHAL, REWARD)}

#: scales at which a recomputed value may be reported (official CHAIR prints len as 0.01 x words)
_SCALES = (1.0, 100.0, 0.01)


SEP = "\x1f"  # column name = base column + SEP + group label (labels are free text)


def _on_group(fn: StatFn, group: str, s: Mapping[str, np.ndarray]) -> np.ndarray:
    tail = SEP + group
    return fn({k[:-len(tail)]: v for k, v in s.items() if k.endswith(tail) and SEP not in k[:-len(tail)]})


def _mean_over(fn: StatFn, groups: list[str], s: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.mean([_on_group(fn, g, s) for g in groups], axis=0)


@dataclass
class StatTable:
    """The columns and the recomputable statistics of one set of records (one run, or one side of pairs)."""

    kind: Kind
    features: Columns
    stats: dict[str, StatFn]

    @classmethod
    def of(cls, kind: Kind, recs: Records, groups: list[str] | None = None) -> "StatTable":
        """Base stats plus, for kinds with sub-groups, per-group stats under their results.json names and
        "<stat>@mean" (the unweighted mean over groups). `groups` fixes the group set (paired tables)."""
        base = kind.features(recs)
        feats, stats = dict(base), dict(kind.stats)
        if kind.group_by is None:
            return cls(kind, feats, stats)
        labels = np.array([str(r.get(kind.group_by)) for r in recs], dtype=object)
        groups = groups if groups is not None else sorted(set(labels))
        for g in groups:
            mask = labels == g
            feats.update({f"{c}{SEP}{g}": v * mask for c, v in base.items()})
        for name, fn in kind.stats.items():
            for g in groups:
                if (metric := kind.group_metric(g, name)) is not None:
                    stats[metric] = partial(_on_group, fn, g)
            stats[f"{name}@mean"] = partial(_mean_over, fn, groups)
        return cls(kind, feats, stats)

    def match(self, name: str, reported: float) -> tuple[str, float] | None:
        """(stat, scale) whose value on all records equals `reported`, trying the exact name (per-group
        metrics), then the canonical stat, pooled and as a mean over groups."""
        found = self.matches(name, reported)
        return found[0] if found else None

    def matches(self, name: str, reported: float) -> list[tuple[str, float]]:
        """Every (stat, scale) that reproduces `reported`, in preference order (see match)."""
        canon = self.kind.canonical(name)
        candidates = [name] + ([canon, f"{canon}@mean"] if canon else [])
        n = len(next(iter(self.features.values()))) if self.features else 0
        out = []
        for stat in (c for c in candidates if c in self.stats):
            value = float(evaluate(self.stats[stat], full_sums(self.features))[0]) if n else float("nan")
            for scale in _SCALES if np.isfinite(value) else ():
                if abs(value * scale - reported) <= 1e-4 * max(1.0, abs(reported)):
                    out.append((stat, scale))
        return out


def first_missing(kind: Kind, recs: Records) -> tuple[int, str] | None:
    """(index, field) of the first scored record lacking a field this kind needs, else None."""
    for i, r in enumerate(recs):
        for f in kind.required:
            if f not in r:
                return i, f
    return None


def is_ok(record: dict[str, Any]) -> bool:
    """A successfully generated record (errors are never scored)."""
    return record.get("error") is None
