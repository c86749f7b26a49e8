"""Rankers of online DPO: which of a prompt's k policy samples is chosen and which rejected.

A ranker has `name`, `oracle` (True when it reads ground truth), `metric_keys` and
`pick(rows, samples) -> [(chosen index, rejected index) | None]` (None: no pair for that prompt).
`stats()` returns the step's metrics (same keys every call; None when not measured).

| spec               | what ranks                                                               | ground truth |
|--------------------|--------------------------------------------------------------------------|--------------|
| `annotator:SPEC`   | the BDHS study's pairwise MLLM annotator (training/annotator.py)          | no           |
| `clip-objects[:D]` | FiSAO-style object-level CLIP reward, self-calibrated per image (default) | no           |
| `clip[:DIR]`       | whole-response CLIP image-text cosine                                    | no           |
| `judge:SPEC`       | a halbench judge's 0-10 rating (pointwise)                               | no           |
| `rm:DIR`           | a text reward model (sequence classification)                            | no           |
| `py:MODULE:ATTR`   | any callable (rows, responses) -> [float or None]                        | its own      |
| `oracle-chair`     | ORACLE (uses ground truth): CHAIR recall - hallucinations vs GT objects  | YES          |

`chair` is accepted as the old name of `oracle-chair` and labelled the same way.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Protocol, Sequence

import numpy as np

from halbench.errors import HalbenchError
from halbench.schema import Request


class Reward(Protocol):
    name: str

    def __call__(self, rows: Sequence[Any], responses: Sequence[str]) -> list[float | None]: ...


class ChairReward:
    """ORACLE (uses ground truth): recall of ground-truth objects - number of hallucinated object mentions
    (CHAIR extraction); rows with a `gt_answer` field (yes/no) score 1 for that answer's word, else 0."""

    name = "oracle-chair"

    def __init__(self, gt: str | None = None, synonyms: str = "coco2018"):
        from halbench.tasks.chair import ChairScorer, load_gt

        self.scorer = ChairScorer(synonyms)
        self.gt = {str(k): set(v) for k, v in load_gt(gt).items()} if gt else {}

    def objects(self, row: Any) -> set[str]:
        if "objects" in row.extra:
            return set(row.extra["objects"])
        key = str(row.extra.get("image_id", row.id))
        if key not in self.gt:
            raise HalbenchError(f"oracle-chair reward: row {row.row} has no 'objects' field and image id {key!r} "
                                "is not in the gt file (set gt=FILE)")
        return self.gt[key]

    def __call__(self, rows, responses):
        out = []
        for row, text in zip(rows, responses):
            if row.extra.get("gt_answer"):
                first = re.sub(r"[^a-z]", "", (text.split() or [""])[0].lower())
                out.append(float(first == row.extra["gt_answer"].lower()))
                continue
            rec = self.scorer.score_caption(text, self.objects(row))
            out.append(rec["n_covered_gt_objects"] / max(1, rec["n_gt_objects"]) - rec["n_hallucinated"])
        return out


class ClipReward:
    """Whole-response CLIP cosine (halbench.clip_scorer; default: the world's CLIP)."""

    name = "clip"

    def __init__(self, clip_dir: str | None = None):
        from halbench.clip_scorer import ClipScorer

        self.scorer = ClipScorer(clip_dir)

    def __call__(self, rows, responses):
        _need_images(rows, self.name)
        return list(self.scorer.sentence_rewards([r.image for r in rows], list(responses)))


class ClipObjectReward:
    """FiSAO-style object-level reward without ground truth (halbench reconstruction): each distinct object
    class the response mentions (CHAIR extraction over the object set C = `synonyms`) scores
    s_c - tau, s_c = cosine(image, template % class); tau = mean + k * std of the image's scores over ALL
    classes of C, so an object counts as supported when it stands out from the image's own distribution.
    Response reward = the sum (0 for no objects)."""

    name = "clip-objects"

    def __init__(self, clip_dir: str | None = None, synonyms: str = "coco2018",
                 template: str = "a photo of a {}.", k: float = 1.0):
        from halbench.clip_scorer import ClipScorer
        from halbench.tasks.chair import ChairScorer
        from halbench.tasks.chair_text import SynonymTable

        self.clip, self.chair, self.k = ClipScorer(clip_dir), ChairScorer(synonyms), k
        self.classes = SynonymTable.load(synonyms).classes
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.class_emb = self.clip.text_embeddings([template.format(c) for c in self.classes])

    def image_scores(self, image: str) -> tuple[np.ndarray, float]:
        s = (self.clip.image_embeddings([image])[0] @ self.class_emb.T).numpy()
        return s, float(s.mean() + self.k * s.std())

    def __call__(self, rows, responses):
        _need_images(rows, self.name)
        out = []
        for row, text in zip(rows, responses):
            scores, tau = self.image_scores(row.image)
            classes = dict.fromkeys(m.cls for m in self.chair.extract(text))
            out.append(float(sum(scores[self.index[c]] - tau for c in classes if c in self.index)))
        return out


class JudgeReward:
    """A halbench judge asked for a 0-10 accuracy rating of each response (None when the call fails)."""

    name = "judge"
    TEMPLATE = ("Rate how accurately the response describes the image, penalising any object or detail that "
                "is not in the image. Question: {prompt}\nResponse: {response}\nReply with 'Rating: N', N from "
                "0 (many hallucinations) to 10 (fully accurate).")

    def __init__(self, spec: str):
        from halbench.judges import _cache, make_judge

        self.judge = make_judge(spec, image=True, cache=_cache("on"))

    @staticmethod
    def parse(text: str):
        m = re.search(r"rating:\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE)
        return (float(m.group(1)), None) if m else (None, "no 'Rating: N' in the judge reply")

    def __call__(self, rows, responses):
        from halbench.judges import JUDGE_GENERATION

        reqs = [Request(id=f"{r.id}-{i}", prompt=self.TEMPLATE.format(prompt=r.prompt, response=t),
                        image=r.image if isinstance(r.image, str) else None, generation=JUDGE_GENERATION)
                for i, (r, t) in enumerate(zip(rows, responses))]
        return [v.value if v.ok else None for v in self.judge.judge(reqs, self.parse)]


class RewardModel:
    """A text reward model (AutoModelForSequenceClassification, 1 label) on 'prompt\\nresponse'."""

    name = "rm"

    def __init__(self, path: str):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def __call__(self, rows, responses):
        import torch

        enc = self.tok([f"{r.prompt}\n{t}" for r, t in zip(rows, responses)], return_tensors="pt", padding=True,
                       truncation=True)
        with torch.no_grad():
            return self.model(**enc).logits[:, 0].float().tolist()


def _need_images(rows, name):
    if any(not isinstance(r.image, str) for r in rows):
        raise HalbenchError(f"{name} reward needs an image for every row")


class RewardRanker:
    """Best vs worst of the k samples by a scalar reward (ties: no pair) (R: the paper ranks pairwise)."""

    metric_keys = ("reward/mean", "reward/chosen", "reward/rejected")

    def __init__(self, reward: Reward, oracle: bool = False):
        self.reward, self.oracle = reward, oracle
        self.name = getattr(reward, "name", getattr(reward, "__name__", "py"))
        self._last: dict[str, float | None] = {}

    def pick(self, rows, samples):
        flat_rows = [r for r, ss in zip(rows, samples) for _ in ss]
        scores = self.reward(flat_rows, [t or "" for ss in samples for t in ss])
        out, chosen, rejected, k0 = [], [], [], 0
        for ss in samples:
            sc = scores[k0:k0 + len(ss)]
            k0 += len(ss)
            valid = [(s, i) for i, (t, s) in enumerate(zip(ss, sc)) if t is not None and s is not None]
            best, worst = (max(valid), min(valid)) if len(valid) >= 2 else (None, None)
            if best is None or best[0] == worst[0]:
                out.append(None)
                continue
            out.append((best[1], worst[1]))
            chosen.append(best[0])
            rejected.append(worst[0])
        valid = [s for s in scores if s is not None]
        self._last = {"reward/mean": float(np.mean(valid)) if valid else None,
                      "reward/chosen": float(np.mean(chosen)) if chosen else None,
                      "reward/rejected": float(np.mean(rejected)) if rejected else None}
        return out

    def stats(self) -> dict[str, float | None]:
        out, self._last = {k: self._last.get(k) for k in self.metric_keys}, {}
        return out


class AnnotatorRanker:
    metric_keys = ("annotator/comparisons", "annotator/decided", "annotator/inconsistent", "annotator/failed",
                   "annotator/first_position_rate")
    oracle = False

    def __init__(self, annotator: Any):
        self.annotator, self.name = annotator, "annotator"

    def pick(self, rows, samples):
        return self.annotator.pick(rows, samples)

    def stats(self) -> dict[str, float | None]:
        from halbench.training.annotator import AnnotatorStats

        out = self.annotator.stats.as_metrics()
        self.annotator.stats = AnnotatorStats()
        return {k: out.get(k) for k in self.metric_keys}


def make_ranker(spec: str, gt: str | None = None, annotator_template: str | None = None,
                annotator_swap: bool = True) -> Any:
    kind, _, arg = spec.partition(":")
    if kind in ("oracle-chair", "chair"):
        print("online-dpo ranker: oracle-chair -- ORACLE (uses ground truth): ranks samples by the CHAIR "
              "evaluation metric itself; no real run has this")
        return RewardRanker(ChairReward(gt or arg or None), oracle=True)
    if kind == "annotator" and arg:
        from halbench.training.annotator import TEMPLATE, PairwiseAnnotator

        return AnnotatorRanker(PairwiseAnnotator(arg, template=annotator_template or TEMPLATE,
                                                 swap=annotator_swap))
    if kind == "clip-objects":
        return RewardRanker(ClipObjectReward(arg or None))
    if kind == "clip":
        return RewardRanker(ClipReward(arg or None))
    if kind == "judge" and arg:
        return RewardRanker(JudgeReward(arg))
    if kind == "rm" and arg:
        return RewardRanker(RewardModel(arg))
    if kind == "py" and arg:
        module, _, attr = arg.rpartition(":")
        return RewardRanker(getattr(importlib.import_module(module), attr))
    raise HalbenchError(f"unknown reward {spec!r}: use annotator:SPEC, clip-objects[:DIR], clip[:DIR], "
                        "judge:SPEC, rm:DIR, py:MODULE:ATTR or oracle-chair")


def as_ranker(obj: Any) -> Any:
    """A ranker from a ranker, an annotator, or a plain reward callable (programmatic use)."""
    if hasattr(obj, "metric_keys") and hasattr(obj, "pick"):
        return obj
    if hasattr(obj, "compare") and hasattr(obj, "pick"):
        return AnnotatorRanker(obj)
    return RewardRanker(obj)
