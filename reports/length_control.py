"""Length-matched controls for caption tasks (CHAIR, Object HalBench): did the trained model name better
objects, or only fewer?

A caption that says less hallucinates less (Rohrbach et al. 2018 already warn; the BDHS study, Amirloo et
al. 2024, repeats it: terse answers lower CHAIR, always report recall). So a comparison of a trained run
against its base adds, per paired sample (same id in both runs):

- the length deltas: words (the CHAIR pipeline's `n_words`), objects named (mentions), distinct correct
  objects named, hallucinated mentions — each with a paired bootstrap CI;
- a length-matched base: each base caption cut to the trained caption's length and scored again with the
  SAME pipeline as the task (its ChairScorer: synonym list and lemmatizer read from results.json), against
  the record's own ground-truth objects. Two cuts:
  * `objects`: the shortest prefix of the base caption that names as many objects as the trained caption
    (the cut falls right after that mention; 0 objects -> the empty caption, scored as naming nothing);
  * `words`: the longest prefix whose `n_words` does not exceed the trained caption's.
  A base caption already no longer than the trained one is kept whole (a cut never lengthens).
  For judge-extracted Object HalBench records a new caption cannot be re-judged offline: the objects
  control then keeps the first k judge-extracted mentions (record fields), and there is no words control.

Cuts fall on word/punctuation boundaries of the original text; which prefix qualifies is decided by scoring
the prefix itself (POS tags can change when a caption is cut), never by counting in the full caption.
Everything here is plain data; length_view.py turns it into tables, a sentence and JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from halbench.reports.stats import PairedResult, paired_deltas

Rec = dict[str, Any]
Pair = tuple[Rec, Rec]
CAPTION_KINDS = ("chair", "object_halbench")
_BOUNDARY = re.compile(r"\w+|[^\w\s]")


# -- the scorer the task used ---------------------------------------------------------------------------
def scorer_for(kind: str, entry: Mapping[str, Any] | None) -> tuple[Any | None, str]:
    """(ChairScorer, description) rebuilt from a results.json task entry; (None, why) when the records were
    judge-extracted (no offline re-scoring). Raises whatever the scorer raises (missing NLTK data, a synonym
    file that moved): the caller turns it into a note."""
    from halbench.tasks.chair import ChairScorer

    task = (entry or {}).get("task") or {}
    options = task.get("options") or {}
    if kind == "object_halbench":
        if task.get("extraction") == "judge":
            return None, "judge-extracted objects: the cut keeps the first k extracted mentions (record fields)"
        synonyms = str(options.get("synonyms") or "objhal_refined")
        return ChairScorer(synonyms, "opera"), f"ChairScorer(synonyms={synonyms!r}, pipeline='opera')"
    synonyms = str(task.get("synonyms") or options.get("synonyms") or "coco2018")
    pipeline = str(task.get("variant") or "opera")
    return ChairScorer(synonyms, pipeline), f"ChairScorer(synonyms={synonyms!r}, pipeline={pipeline!r})"


# -- cutting one caption --------------------------------------------------------------------------------
def cut_points(caption: str) -> list[int]:
    """Character offsets where a prefix may end: after each word or punctuation mark."""
    return [m.end() for m in _BOUNDARY.finditer(caption)]


def _n_objects(scorer: Any, text: str) -> int:
    return len(scorer.extract(text))


def _n_words(scorer: Any, text: str) -> int:
    return len(scorer.analyze(text).words)


def _search(ends: list[int], ok: Callable[[int], bool], want_first: bool) -> int | None:
    """Binary search over prefix ends: the first end where ok() holds (want_first) or the last where it
    holds; ok must be monotone (false..true, or true..false), which prefix counts are up to POS-tag noise."""
    lo, hi, found = 0, len(ends) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(ends[mid]):
            found = mid
            lo, hi = (lo, mid - 1) if want_first else (mid + 1, hi)
        else:
            lo, hi = (mid + 1, hi) if want_first else (lo, mid - 1)
    return found


def truncate_to_objects(scorer: Any, caption: str, k: int) -> str:
    """The shortest prefix of `caption` naming >= k objects when re-scored (k >= all: the whole caption)."""
    if _n_objects(scorer, caption) <= k:
        return caption
    if k <= 0:
        return ""
    ends = cut_points(caption)
    i = _search(ends, lambda e: _n_objects(scorer, caption[:e]) >= k, want_first=True)
    return caption[: ends[i]] if i is not None else caption


def truncate_to_words(scorer: Any, caption: str, n: int) -> str:
    """The longest prefix of `caption` whose re-scored n_words is <= n."""
    if _n_words(scorer, caption) <= n:
        return caption
    ends = cut_points(caption)
    i = _search(ends, lambda e: _n_words(scorer, caption[:e]) <= n, want_first=False)
    return caption[: ends[i]] if i is not None else ""


def rescore(scorer: Any, base: Rec, caption: str) -> Rec:
    """A record for `caption` scored like the task scores one, against the base record's ground truth."""
    rec = scorer.score_caption(caption, base.get("gt_objects") or [])
    return {"id": base.get("id"), "image_id": base.get("image_id"), **rec}


def first_mentions(base: Rec, k: int) -> Rec:
    """Judge-extracted records: keep the first k mentions (record fields), recomputing the derived fields."""
    gt = set(base.get("gt_objects") or [])
    mentioned = list(base.get("mentioned") or [])[: max(0, k)]
    correct = [m for m in mentioned if m in gt]
    return {**base, "mentioned": mentioned, "words": list(base.get("words") or [])[: len(mentioned)],
            "hallucinated": [m for m in mentioned if m not in gt], "correct_mentions": correct,
            "covered_gt_objects": sorted(set(correct))}


# -- controls over pairs --------------------------------------------------------------------------------
@dataclass
class Control:
    name: str  # "objects" | "words"
    description: str
    records: list[Rec]  # one per pair, in pair order
    n_cut: int  # base captions actually shortened
    mismatched: int = 0  # cuts whose re-scored count missed the target (POS-tag context effects)


def objects_control(scorer: Any | None, pairs: list[Pair]) -> Control:
    recs, cut, missed = [], 0, 0
    for base, run in pairs:
        k = len(run.get("mentioned") or [])
        if scorer is None:
            rec = first_mentions(base, k)
        else:
            rec = rescore(scorer, base, truncate_to_objects(scorer, str(base.get("caption") or ""), k))
        n_base = len(base.get("mentioned") or [])
        cut += len(rec["mentioned"]) < n_base or rec.get("caption") != base.get("caption")
        missed += len(rec["mentioned"]) != min(k, n_base)
        recs.append(rec)
    how = "the first k judge-extracted mentions" if scorer is None else "the shortest prefix naming k objects"
    return Control("objects", f"base captions cut to the trained caption's object count k ({how})", recs,
                   int(cut), int(missed))


def words_control(scorer: Any, pairs: list[Pair]) -> Control:
    recs, cut, missed = [], 0, 0
    for base, run in pairs:
        n = int(run.get("n_words") or 0)
        caption = str(base.get("caption") or "")
        short = truncate_to_words(scorer, caption, n)
        rec = rescore(scorer, base, short)
        cut += short != caption
        missed += rec["n_words"] > n
        recs.append(rec)
    return Control("words", "base captions cut to the trained caption's word count (longest prefix with no more "
                   "words)", recs, cut, missed)


def check_rescoring(scorer: Any, pairs: list[Pair], limit: int = 50) -> int:
    """How many of the first `limit` base records the rebuilt scorer does NOT reproduce (0 = same pipeline)."""
    bad = 0
    for base, _ in pairs[:limit]:
        again = scorer.score_caption(str(base.get("caption") or ""), base.get("gt_objects") or [])
        bad += again["mentioned"] != list(base.get("mentioned") or []) or again["n_words"] != base.get("n_words")
    return bad


# -- statistics -----------------------------------------------------------------------------------------
def features(recs: list[Rec]) -> dict[str, np.ndarray]:
    """Per-caption columns whose sums give every figure below (CHAIR definitions, tasks/chair.py)."""
    def col(fn) -> np.ndarray:
        return np.fromiter((fn(r) for r in recs), dtype=float, count=len(recs))

    return {"n": np.ones(len(recs)), "words": col(lambda r: r.get("n_words") or 0),
            "mentions": col(lambda r: len(r.get("mentioned") or [])),
            "hal": col(lambda r: len(r.get("hallucinated") or [])),
            "hal_caps": col(lambda r: bool(r.get("hallucinated"))),
            "recalled": col(lambda r: len(set(r.get("correct_mentions") or []))),
            "gt": col(lambda r: len(set(r.get("gt_objects") or [])))}


#: (key, label, statistic, is a rate) in display order
FIGURES: list[tuple[str, str, Callable, bool]] = [
    ("chair_i", "CHAIRi (hallucinated mentions / mentions)", lambda s: s["hal"] / s["mentions"], True),
    ("chair_s", "CHAIRs (captions with a hallucination)", lambda s: s["hal_caps"] / s["n"], True),
    ("recall", "recall (GT objects named / GT objects)", lambda s: s["recalled"] / s["gt"], True),
    ("words", "words per caption", lambda s: s["words"] / s["n"], False),
    ("objects", "objects named per caption", lambda s: s["mentions"] / s["n"], False),
    ("correct_objects", "distinct correct objects per caption", lambda s: s["recalled"] / s["n"], False),
    ("hallucinated_objects", "hallucinated mentions per caption", lambda s: s["hal"] / s["n"], False),
]
STATS = {key: fn for key, _, fn, _ in FIGURES}
LENGTH_KEYS = ("words", "objects", "correct_objects", "hallucinated_objects")


def point_values(recs: list[Rec]) -> dict[str, float]:
    cols = {k: float(np.sum(v)) for k, v in features(recs).items()}
    out = {}
    for key, fn in STATS.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            out[key] = float(fn({k: np.asarray([v]) for k, v in cols.items()})[0])
    return out


def paired(a: list[Rec], b: list[Rec], n_boot: int, seed: int) -> dict[str, PairedResult]:
    """b - a for every figure, paired bootstrap over the same sample ids (rows in the same order)."""
    return paired_deltas(features(a), features(b), STATS, n_boot, seed)


@dataclass
class LengthComparison:
    """Everything the report and comparison.json say about one (base, run) pair of one caption task."""

    task: str
    base: str
    run: str
    n_pairs: int
    pipeline: str
    values: dict[str, dict[str, float]]  # "base" | "run" | control name -> figure -> value
    deltas: dict[str, dict[str, PairedResult]]  # "run-base" | "<control>-base" | "run-<control>" -> figure
    controls: list[Control] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare(task: str, kind: str, entry: Mapping[str, Any] | None, base_label: str, run_label: str,
            pairs: list[Pair], n_boot: int, seed: int) -> LengthComparison:
    """Length deltas and the length-matched controls of one trained run against its base."""
    bases, runs = [a for a, _ in pairs], [b for _, b in pairs]
    out = LengthComparison(task, base_label, run_label, len(pairs), "", {"base": point_values(bases),
                                                                          "run": point_values(runs)},
                           {"run-base": paired(bases, runs, n_boot, seed)})
    try:
        scorer, out.pipeline = scorer_for(kind, entry)
        bad = check_rescoring(scorer, pairs) if scorer is not None else 0
    except Exception as e:  # noqa: BLE001 - a missing corpus (NLTK data) must not cost the whole report
        out.notes.append(f"length-matched control not computed: the task's scorer cannot be rebuilt ({e})")
        return out
    if bad:
        out.notes.append(f"length-matched control not computed: re-scoring {bad} base caption(s) with "
                         f"{out.pipeline} does not reproduce their records (a different pipeline wrote them)")
        return out
    out.controls = [objects_control(scorer, pairs)] + ([words_control(scorer, pairs)] if scorer else [])
    for c in out.controls:
        out.values[c.name] = point_values(c.records)
        out.deltas[f"{c.name}-base"] = paired(bases, c.records, n_boot, seed)
        out.deltas[f"run-{c.name}"] = paired(c.records, runs, n_boot, seed)
        if c.mismatched:
            out.notes.append(f"{c.name} control: {c.mismatched} of {len(pairs)} cut captions re-score to a "
                             "different count than targeted (POS tags shift when a caption is cut)")
    return out
