"""CHAIR's scorer: object mentions of a caption (the official pipeline) and the corpus metrics.

Split from halbench.tasks.chair (which re-exports every name here); the card there names the sources and
parity status. `ChairScorer` turns a caption into mentions of COCO classes the way the official chair.py does;
`chair_metrics` aggregates per-caption records into CHAIRs / CHAIRi / recall / len.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from halbench.errors import HalbenchError

from halbench.tasks import chair_text
from halbench.tasks.chair_text import SynonymTable, double_word_dict

PIPELINES = ("opera", "2018")


@dataclass(frozen=True)
class Mention:
    """One object mention: surface `word` (caption[start:end]), COCO class `cls`, synonym-table `lemma`."""

    word: str
    cls: str
    start: int | None
    end: int | None
    lemma: str


@dataclass(frozen=True)
class Analysis:
    words: list[str]  # the official `words`: lemmas after double-word merging (its length is Len)
    mentions: list[Mention]


class ChairScorer:
    """Extract COCO object mentions from captions and score them against ground-truth object sets."""

    def __init__(self, synonyms: str | Path = "coco2018", pipeline: str = "opera", cache_size: int = 50000):
        if pipeline not in PIPELINES:
            raise HalbenchError(f"unknown CHAIR pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
        self.pipeline, self.synonyms = pipeline, SynonymTable.load(synonyms)
        self.double = double_word_dict(pipeline)
        self._lemmatizer = chair_text.opera_lemmatizer() if pipeline == "opera" else None
        self._cache: dict[str, Analysis] = {}
        self._cache_size = cache_size

    def _lemmas(self, tokens: list[str]) -> list[str]:
        if self._lemmatizer is not None:
            return self._lemmatizer.lemmatize(tokens)
        return [chair_text.singularize(t) for t in tokens]

    def analyze(self, caption: str) -> Analysis:
        hit = self._cache.get(caption)
        if hit is None:
            hit = self._analyze(caption)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[caption] = hit
        return hit

    def _analyze(self, caption: str) -> Analysis:
        lower = caption.lower()
        tokens = chair_text.word_tokenize(lower)
        spans = chair_text.token_spans(lower, tokens) if len(lower) == len(caption) else [None] * len(tokens)
        lemmas = self._lemmas(tokens)
        merged: list[tuple[str, tuple[int, int] | None]] = []
        i = 0
        while i < len(lemmas):  # official double-word loop: greedy left-to-right pairs
            pair = " ".join(lemmas[i:i + 2])
            if pair in self.double:
                a, b = spans[i], spans[i + 1]
                merged.append((self.double[pair], (a[0], b[1]) if a and b else None))
                i += 2
            else:
                merged.append((lemmas[i], spans[i]))
                i += 1
        words = [w for w, _ in merged]
        if "toilet" in words and "seat" in words:  # "the seat of the toilet" is not a chair
            merged = [m for m in merged if m[0] != "seat"]
        inv = self.synonyms.inverse
        mentions = [
            Mention(caption[s[0]:s[1]] if s else w, inv[w], s[0] if s else None, s[1] if s else None, w)
            for w, s in merged if w in inv
        ]
        return Analysis(words, mentions)

    def extract(self, caption: str) -> list[Mention]:
        return self.analyze(caption).mentions

    def score_caption(self, caption: str, gt_objects: Iterable[str]) -> dict[str, Any]:
        """The per-caption record (TEAM.md chair fields + counts); gt_objects are class names."""
        gt = set(gt_objects)
        a = self.analyze(caption)
        halluc = [m for m in a.mentions if m.cls not in gt]
        correct = [m.cls for m in a.mentions if m.cls in gt]
        covered = sorted(set(correct))
        return {
            "caption": caption,
            "mentioned": [m.cls for m in a.mentions],
            "words": [m.word for m in a.mentions],
            "mention_lemmas": [m.lemma for m in a.mentions],
            "mention_spans": [[m.start, m.end] if m.start is not None else None for m in a.mentions],
            "hallucinated": [m.cls for m in halluc],
            "hallucinated_words": [m.word for m in halluc],
            "correct_mentions": correct,
            "gt_objects": sorted(gt),
            "covered_gt_objects": covered,
            "n_words": len(a.words),
            "n_mentions": len(a.mentions),
            "n_hallucinated": len(halluc),
            "n_gt_objects": len(gt),
            "n_covered_gt_objects": len(covered),
        }


def chair_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus-level CHAIR over scored records; error/skipped records are counted, never scored."""
    ok = [r for r in records if not r.get("error") and not r.get("skipped")]
    n = len(ok)
    n_h_caps = sum(1 for r in ok if r["n_hallucinated"] > 0)
    n_m = sum(r["n_mentions"] for r in ok)
    n_h = sum(r["n_hallucinated"] for r in ok)
    n_gt = sum(r["n_gt_objects"] for r in ok)
    n_cov = sum(r["n_covered_gt_objects"] for r in ok)
    n_with = sum(1 for r in ok if r["n_mentions"] > 0)
    ratio = lambda a, b: (a / b) if b else None  # noqa: E731 - undefined (not 0) on an empty denominator
    return {
        "chair_s": ratio(n_h_caps, n), "chair_i": ratio(n_h, n_m), "recall": ratio(n_cov, n_gt),
        "len": ratio(sum(r["n_words"] for r in ok), n),
        "chair_s_refine": ratio(n_h_caps, n_with),
        "n_captions": n, "n_hallucinated_captions": n_h_caps, "n_mentions": n_m, "n_hallucinated_mentions": n_h,
        "n_gt_objects": n_gt, "n_covered_gt_objects": n_cov, "n_captions_with_mentions": n_with,
        "n_samples": len(records), "n_errors": sum(1 for r in records if r.get("error")),
        "n_skipped": sum(1 for r in records if r.get("skipped") and not r.get("error")),
    }

