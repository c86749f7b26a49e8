"""Online DPO and mixed DPO: pairs sampled from the current policy and ranked by a reward.

Card
- Sources: online DPO as studied for MLLMs in Amirloo et al. 2024, "Understanding Alignment in Multimodal
  LLMs" (BDHS study, arXiv 2407.02477), building on Guo et al. 2024 ("Direct Language Model Alignment from
  Online AI Feedback", arXiv 2402.04792). Only the BDHS study's abstract was retrievable offline: the
  ranking rule, k and the sampling settings below are reconstructions (R).
- Each step, for every prompt of the batch: sample k responses from the current policy (temperature 1.0,
  top-p 1.0 (R)), score them with a Reward, and pair the highest-scoring response (chosen) with the
  lowest-scoring one (rejected) (R); prompts whose k rewards all tie give no pair (counted). Then one DPO
  step (training/dpo.py loss) against a live reference (the LoRA base, or a frozen copy of the start).
- Mixed DPO (mixed=true): each sample of the batch uses its offline pair from the data with probability
  mix_prob = 0.5, else an online pair, as in the BDHS study.
- Rewards (`reward=`), all behind the small `Reward` protocol (rows, responses) -> list[float | None]:
  `chair` (default; rule judge on ground-truth objects: covered-object recall minus the number of
  hallucinated object mentions, CHAIR pipeline of halbench.tasks.chair; rows need `objects` or `gt`;
  yes/no rows with a `gt_answer` field score 1 for the right answer word, else 0),
  `clip[:DIR]` (CLIP image-text cosine from halbench.clip_scorer, the FiSAO-style verifier; default: the
  world's CLIP), `judge:SPEC` (a halbench judge, openai:MODEL@URL or hf:DIR, asked for a 0-10 rating),
  `rm:DIR` (a text sequence-classification reward model on prompt + response), `py:MODULE:ATTR` (any callable
  with the protocol's signature). A reward of None (failed judge call) excludes that sample.
- Logged: the DPO metrics plus reward/mean, reward/chosen, reward/rejected, online/pairs, online/ties,
  mixed/offline_fraction. `kl` here is the mean policy-minus-reference log-ratio of responses the policy
  just sampled (selected best/worst, so a biased KL estimate).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from halbench.errors import HalbenchError
from halbench.schema import GenerationSettings, Request
from halbench.training.base import TrainConfig, TrainingMethod, hp
from halbench.training.data import PAIR_FIELDS, PreferenceRow, load_preferences, validate_rows
from halbench.training.dpo import DPOSettings, pair_loss
from halbench.training.loop import Session, run_training
from halbench.training.synthetic import WorldDataSettings, world_source

PAPER = ("Online/mixed DPO as studied in Amirloo et al. 2024, Understanding Alignment in Multimodal LLMs "
         "(arXiv 2407.02477); online AI feedback: Guo et al. 2024 (arXiv 2402.04792)")


class Reward(Protocol):
    name: str

    def __call__(self, rows: Sequence[PreferenceRow], responses: Sequence[str]) -> list[float | None]: ...


class ChairReward:
    """recall of ground-truth objects - number of hallucinated object mentions (CHAIR extraction); rows with
    a `gt_answer` field (yes/no questions) score 1 for that answer's word and 0 otherwise."""

    name = "chair"

    def __init__(self, gt: str | None = None, synonyms: str = "coco2018"):
        from halbench.tasks.chair import ChairScorer, load_gt

        self.scorer = ChairScorer(synonyms)
        self.gt = {str(k): set(v) for k, v in load_gt(gt).items()} if gt else {}

    def objects(self, row: PreferenceRow) -> set[str]:
        if "objects" in row.extra:
            return set(row.extra["objects"])
        key = str(row.extra.get("image_id", row.id))
        if key not in self.gt:
            raise HalbenchError(f"chair reward: row {row.row} has no 'objects' field and image id {key!r} is "
                                "not in the gt file (set gt=FILE)")
        return self.gt[key]

    def __call__(self, rows, responses):
        out = []
        for row, text in zip(rows, responses):
            if row.extra.get("gt_answer"):  # a yes/no row: 1 for the right answer word, else 0
                first = re.sub(r"[^a-z]", "", (text.split() or [""])[0].lower())
                out.append(float(first == row.extra["gt_answer"].lower()))
                continue
            rec = self.scorer.score_caption(text, self.objects(row))
            recall = rec["n_covered_gt_objects"] / max(1, rec["n_gt_objects"])
            out.append(recall - rec["n_hallucinated"])
        return out


class ClipReward:
    name = "clip"

    def __init__(self, clip_dir: str | None = None):
        from halbench.clip_scorer import ClipScorer

        self.scorer = ClipScorer(clip_dir)

    def __call__(self, rows, responses):
        if any(not isinstance(r.image, str) for r in rows):
            raise HalbenchError("clip reward needs an image for every row")
        return list(self.scorer.sentence_rewards([r.image for r in rows], list(responses)))


class JudgeReward:
    """A halbench judge asked for a 0-10 accuracy rating of each response (None when the call fails)."""

    name = "judge"
    TEMPLATE = ("Rate how accurately the response describes the image, penalising any object or detail that "
                "is not in the image. Question: {prompt}\nResponse: {response}\nReply with 'Rating: N', N from "
                "0 (many hallucinations) to 10 (fully accurate).")

    def __init__(self, spec: str):
        from halbench.judges import make_judge

        self.judge = make_judge(spec, image=True, cache=None)

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
        import torch  # noqa: F401
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def __call__(self, rows, responses):
        import torch

        enc = self.tok([f"{r.prompt}\n{t}" for r, t in zip(rows, responses)], return_tensors="pt", padding=True,
                       truncation=True)
        with torch.no_grad():
            return self.model(**enc).logits[:, 0].float().tolist()


def make_reward(spec: str, gt: str | None = None) -> Reward:
    kind, _, arg = spec.partition(":")
    if kind == "chair":
        return ChairReward(gt or arg or None)
    if kind == "clip":
        return ClipReward(arg or None)
    if kind == "judge" and arg:
        return JudgeReward(arg)
    if kind == "rm" and arg:
        return RewardModel(arg)
    if kind == "py" and arg:
        module, _, attr = arg.rpartition(":")
        return getattr(importlib.import_module(module), attr)
    raise HalbenchError(f"unknown reward {spec!r}: use chair, clip[:DIR], judge:SPEC, rm:DIR or py:MODULE:ATTR")


@dataclass
class Config(WorldDataSettings, DPOSettings, TrainConfig):
    reward: str = hp("chair", "Reward ranking the samples: chair | clip[:DIR] | judge:SPEC | rm:DIR | "
                     "py:MODULE:ATTR (see the card).", "not available offline (R)")
    gt: str | None = hp(None, "Ground-truth objects JSON {image_id: [classes]} for the chair reward when rows "
                        "carry no 'objects'.")
    num_samples: int = hp(4, "Responses sampled per prompt (k).", "not available offline (R)")
    temperature: float = hp(1.0, "Sampling temperature.", "not available offline (R)")
    top_p: float = hp(1.0, "Nucleus sampling p.", "not available offline (R)")
    max_new_tokens: int = hp(64, "Token budget of a sampled response.")
    mixed: bool = hp(False, "Mixed DPO: each sample is its offline pair with probability mix_prob, else online.",
                     "mixed offline/online DPO")
    mix_prob: float = hp(0.5, "Probability of the offline pair in mixed DPO.", 0.5)

    def check(self) -> None:
        super().check()
        self.check_loss()
        self.check_world()
        if self.num_samples < 2:
            raise HalbenchError("num_samples must be >= 2 to form a pair")


def prompt_rows(session: Session, cfg: Config) -> list[PreferenceRow]:
    source = world_source(session, cfg)
    rows, problems = load_preferences(source, cfg.image_root)
    report = validate_rows(rows, source=str(source), encoder=session.batcher, bad_rows=cfg.bad_rows,
                           parse_problems=problems,
                           required=PAIR_FIELDS if cfg.mixed else ("prompt",))
    session.accelerator.print(report.summary())
    return report.kept


def sample(session: Session, cfg: Config, rows: list[PreferenceRow]) -> list[list[str | None]]:
    """k sampled responses per row from the current policy (None for a failed generation)."""
    g = GenerationSettings(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                           top_p=cfg.top_p)
    reqs = [Request(id=f"{r.id}|s{j}|t{session.global_step}|p{session.accelerator.process_index}",
                    prompt=r.prompt, image=r.image, generation=g) for r in rows for j in range(cfg.num_samples)]
    session.policy.eval()
    out = session.hf.generate(reqs)
    session.policy.train()
    texts = [o.text if o.ok and o.text.strip() else None for o in out]
    return [texts[i * cfg.num_samples:(i + 1) * cfg.num_samples] for i in range(len(rows))]


def best_worst(row: PreferenceRow, samples: list[str | None], rewards: list[float | None]):
    """(pair row, chosen reward, rejected reward) or None when every valid sample ties."""
    valid = [(r, s) for s, r in zip(samples, rewards) if s is not None and r is not None]
    if len(valid) < 2:
        return None
    best, worst = max(valid, key=lambda x: x[0]), min(valid, key=lambda x: x[0])
    if best[0] == worst[0]:
        return None
    pair = PreferenceRow(prompt=row.prompt, chosen=best[1], rejected=worst[1], image=row.image, row=row.row,
                         id=row.id, extra=row.extra)
    return pair, best[0], worst[0]


def make_step(cfg: Config, rows: list[PreferenceRow], reward: Reward):
    def step(session: Session, idx: list[int]):
        batch_rows = [rows[i] for i in idx]
        rng = np.random.default_rng([cfg.seed, session.global_step, session.accelerator.process_index])
        offline = [cfg.mixed and bool(r.rejected) and rng.random() < cfg.mix_prob for r in batch_rows]
        online_rows = [r for r, off in zip(batch_rows, offline) if not off]
        pairs = [r for r, off in zip(batch_rows, offline) if off]
        stats: dict[str, Any] = {"online/pairs": 0.0, "online/ties": 0.0, "reward/mean": None,
                                 "reward/chosen": None, "reward/rejected": None,
                                 "mixed/offline_fraction": float(np.mean(offline))}
        if online_rows:
            samples = sample(session, cfg, online_rows)
            flat_rows = [r for r, s in zip(online_rows, samples) for _ in s]
            flat = [t for s in samples for t in s]
            scores = reward(flat_rows, [t or "" for t in flat])
            k = cfg.num_samples
            picked = [best_worst(r, samples[i], scores[i * k:(i + 1) * k]) for i, r in enumerate(online_rows)]
            good = [p for p in picked if p is not None]
            valid = [s for s in scores if s is not None]
            stats.update({"online/pairs": float(len(good)), "online/ties": float(len(picked) - len(good)),
                          "reward/mean": float(np.mean(valid)) if valid else None,
                          "reward/chosen": float(np.mean([g[1] for g in good])) if good else None,
                          "reward/rejected": float(np.mean([g[2] for g in good])) if good else None})
            pairs += [g[0] for g in good]
        weight = 1.0
        if not pairs:  # every prompt tied: a zero-weight step keeps processes in lock-step
            r0 = batch_rows[0]
            pairs = [PreferenceRow(prompt=r0.prompt, chosen=r0.chosen or "a", rejected=(r0.chosen or "a") + " .",
                                   image=r0.image, row=r0.row, id=r0.id)]
            weight = 0.0
        batch = session.batcher.pairs(pairs)
        ref_c, ref_r = session.ref_logps(batch)[0].sum(1).chunk(2)
        loss, metrics = pair_loss(cfg, session, batch, ref_c, ref_r)
        return loss * weight, {**metrics, **stats}

    return step


def train(cfg: Config, callbacks=(), reward: Reward | None = None) -> Path:
    """Online (or mixed) DPO; returns OUTPUT/train/final. `reward` overrides cfg.reward (programmatic use)."""

    def body(session: Session) -> Path:
        rows = prompt_rows(session, cfg)
        rw = reward or make_reward(cfg.reward, cfg.gt)
        return session.fit(len(rows), make_step(cfg, rows, rw), callbacks)

    return run_training(cfg, "online-dpo", body)


METHOD = TrainingMethod(
    name="online-dpo", Config=Config, train=train, paper=PAPER,
    description="Online DPO (k samples from the policy ranked by a reward) and mixed offline/online DPO.",
)
