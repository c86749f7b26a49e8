"""Online DPO and mixed DPO: pairs sampled from the current policy and ranked without ground truth.

Card
- Source: the BDHS study, Amirloo et al. 2024, "Understanding Alignment in Multimodal LLMs" (arXiv
  2407.02477; notes: ../shared/PAPERS.md), building on Guo et al. 2024 ("Direct Language Model Alignment from
  Online AI Feedback", arXiv 2402.04792). Status: the procedure as the paper describes it; (R) marks
  halbench's choices where it is silent.
- Each step, for every prompt of the batch: sample k responses from the CURRENT policy (k, temperature and
  top-p are not stated in the paper (R): 4, 1.0, 1.0), rank them, and pair chosen with rejected; prompts
  whose samples cannot be ranked give no pair (counted). Then one DPO step (training/dpo.py loss) against a
  live reference (the LoRA base, a frozen copy of the start, or `ref_model`).
- Ranking (`reward=`; training/online_rankers.py):
  * `annotator:SPEC` -- the paper's annotator: an MLLM (LLaVA-1.6-34B in the paper; any halbench judge spec:
    openai:MODEL@URL or hf:DIR) compares two responses PAIRWISE with the Table 14 prompt (paraphrased;
    `annotator_template`), each pair asked in both orders (`annotator_swap`, a position-bias check; a pair
    whose orders disagree is undecided), verdicts cached in halbench's judge cache; k > 2: Copeland winner /
    loser over all pairs (R). training/annotator.py.
  * `clip-objects` (default, offline): FiSAO-style object-level CLIP reward, GT-free (R) -- cheap stand-in
    for the annotator where no MLLM annotator is available.
  * `clip`, `judge:SPEC` (0-10 rating), `rm:DIR`, `py:MODULE:ATTR`: scalar rewards, best vs worst (R).
  * `oracle-chair` -- ORACLE (uses ground truth): the CHAIR metric on ground-truth objects. A diagnostic
    upper bound, never the default; no real run has ground truth at training time.
- Mixed DPO (mixed=true; Eq. 4): per sample, alpha ~ Bernoulli(mix_prob = 0.5) picks its offline pair from
  the data, else an online pair.
- Logged: the DPO metrics, online/pairs, online/ties, mixed/offline_fraction, and the ranker's own
  (reward/mean, reward/chosen, reward/rejected; or annotator/comparisons, decided, inconsistent, failed,
  first_position_rate). `kl` here is the mean policy-minus-reference log-ratio of the selected samples
  (selected best/worst, so a biased KL estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from halbench.errors import HalbenchError
from halbench.schema import GenerationSettings, Request
from halbench.training.base import TrainConfig, TrainingMethod, hp
from halbench.training.data import PAIR_FIELDS, PreferenceRow, load_preferences, validate_rows
from halbench.training.dpo import DPOSettings, pair_loss
from halbench.training.loop import Session, run_training
from halbench.training.online_rankers import (ChairReward, ClipObjectReward, ClipReward, JudgeReward,  # noqa: F401
                                              Reward, RewardModel, as_ranker, make_ranker)
from halbench.training.synthetic import WorldDataSettings, world_source

PAPER = ("Online/mixed DPO as studied in Amirloo et al. 2024, Understanding Alignment in Multimodal LLMs "
         "(arXiv 2407.02477); online AI feedback: Guo et al. 2024 (arXiv 2402.04792)")


def make_reward(spec: str, gt: str | None = None) -> Any:
    """Backward-compatible name: the ranker for `spec` (see training/online_rankers.py)."""
    return make_ranker(spec, gt)


@dataclass
class Config(WorldDataSettings, DPOSettings, TrainConfig):
    reward: str = hp("clip-objects", "Ranker of the samples: annotator:SPEC (the paper's pairwise MLLM) | "
                     "clip-objects[:DIR] (GT-free, default) | clip[:DIR] | judge:SPEC | rm:DIR | py:MODULE:ATTR | "
                     "oracle-chair (ORACLE: uses ground truth). See the card.",
                     "annotator MLLM, pairwise (LLaVA-1.6-34B; 7B also tried)")
    annotator_template: str | None = hp(None, "Prompt of the annotator with {prompt}, {response_1}, "
                                        "{response_2} (default: training/annotator.py TEMPLATE, Table 14 "
                                        "paraphrased).", "Table 14 prompt")
    annotator_swap: bool = hp(True, "Ask every pair in both orders and keep only agreeing verdicts.",
                              "positions checked; no position bias found")
    gt: str | None = hp(None, "Ground-truth objects JSON {image_id: [classes]} for the oracle-chair ranker when "
                        "rows carry no 'objects'.")
    num_samples: int = hp(4, "Responses sampled per prompt (k).", "not specified")
    temperature: float = hp(1.0, "Sampling temperature.", "not specified")
    top_p: float = hp(1.0, "Nucleus sampling p.", "not specified")
    max_new_tokens: int = hp(64, "Token budget of a sampled response.", "not specified")
    mixed: bool = hp(False, "Mixed DPO (Eq. 4): each sample is its offline pair with probability mix_prob, "
                     "else online.", "Mixed-DPO, Eq. 4")
    mix_prob: float = hp(0.5, "Probability of the offline pair in mixed DPO (alpha ~ Bernoulli).", 0.5)

    def check(self) -> None:
        super().check()
        self.check_loss()
        self.check_world()
        if self.num_samples < 2:
            raise HalbenchError("num_samples must be >= 2 to form a pair")
        kind, _, arg = self.reward.partition(":")
        if kind not in RANKER_KINDS or (kind in ("annotator", "judge", "rm", "py") and not arg):
            raise HalbenchError(f"unknown reward {self.reward!r}: use annotator:SPEC, clip-objects[:DIR], "
                                "clip[:DIR], judge:SPEC, rm:DIR, py:MODULE:ATTR or oracle-chair")


RANKER_KINDS = ("annotator", "clip-objects", "clip", "judge", "rm", "py", "oracle-chair", "chair")


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


def online_pairs(session: Session, cfg: Config, ranker: Any, rows: list[PreferenceRow]):
    """Online pairs for `rows` (ranked samples of the current policy) and the number of unranked prompts."""
    samples = sample(session, cfg, rows)
    picked = ranker.pick(rows, samples)
    pairs = [PreferenceRow(prompt=r.prompt, chosen=ss[p[0]], rejected=ss[p[1]], image=r.image, row=r.row, id=r.id,
                           extra=r.extra) for r, ss, p in zip(rows, samples, picked) if p is not None]
    return pairs, len(rows) - len(pairs)


def make_step(cfg: Config, rows: list[PreferenceRow], ranker: Any):
    def step(session: Session, idx: list[int]):
        batch_rows = [rows[i] for i in idx]
        rng = np.random.default_rng([cfg.seed, session.global_step, session.accelerator.process_index])
        offline = [cfg.mixed and bool(r.rejected) and rng.random() < cfg.mix_prob for r in batch_rows]
        online_rows = [r for r, off in zip(batch_rows, offline) if not off]
        pairs = [r for r, off in zip(batch_rows, offline) if off]
        stats: dict[str, Any] = {"online/pairs": 0.0, "online/ties": 0.0,
                                 "mixed/offline_fraction": float(np.mean(offline))}
        if online_rows:
            good, ties = online_pairs(session, cfg, ranker, online_rows)
            stats.update({"online/pairs": float(len(good)), "online/ties": float(ties)})
            pairs += good
        stats.update(ranker.stats())  # the same keys every call (None where not measured)
        weight = 1.0
        if not pairs:  # every prompt unranked: a zero-weight step keeps processes in lock-step
            r0 = batch_rows[0]
            pairs = [PreferenceRow(prompt=r0.prompt, chosen=r0.chosen or "a", rejected=(r0.chosen or "a") + " .",
                                   image=r0.image, row=r0.row, id=r0.id)]
            weight = 0.0
        batch = session.batcher.pairs(pairs)
        ref_c, ref_r = session.ref_logps(batch)[0].sum(1).chunk(2)
        loss, metrics = pair_loss(cfg, session, batch, ref_c, ref_r)
        return loss * weight, {**metrics, **stats}

    return step


def train(cfg: Config, callbacks=(), reward: Any = None) -> Path:
    """Online (or mixed) DPO; returns OUTPUT/train/final. `reward` (a reward callable, an annotator or a
    ranker) overrides cfg.reward (programmatic use)."""

    def body(session: Session) -> Path:
        rows = prompt_rows(session, cfg)
        ranker = as_ranker(reward) if reward is not None else make_ranker(
            cfg.reward, cfg.gt, cfg.annotator_template, cfg.annotator_swap)
        session.accelerator.print(f"online-dpo ranker: {ranker.name}"
                                  f"{' -- ORACLE (uses ground truth)' if ranker.oracle else ''}")
        return session.fit(len(rows), make_step(cfg, rows, ranker), callbacks)

    return run_training(cfg, "online-dpo", body)


METHOD = TrainingMethod(
    name="online-dpo", Config=Config, train=train, paper=PAPER,
    description="Online DPO (k policy samples ranked by the paper's pairwise MLLM annotator or a GT-free CLIP "
                "reward) and mixed offline/online DPO (Eq. 4).",
)
