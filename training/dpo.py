"""Offline DPO (sigmoid), IPO and SLiC on image preference pairs, with an optional SFT term on the chosen response.

Card
- Sources: DPO, Rafailov et al. 2023 (arXiv 2305.18290), Eq. 7; IPO, Azar et al. 2023 (arXiv 2310.12036),
  Eq. 17; SLiC, Zhao et al. 2023 (SLiC-HF, arXiv 2305.10425), Eq. 2 in TRL's "hinge" form; conservative DPO
  label smoothing (Mitchell 2023); SFT-on-chosen as in RPO (Pang et al. 2024) and TRL's loss_type "sft".
  Multimodal setting: the BDHS study (Amirloo et al. 2024, "Understanding Alignment in Multimodal LLMs",
  arXiv 2407.02477; notes in ../shared/PAPERS.md), which compares DPO (Eq. 3), IPO and SLiC offline
  (Table 12) on LLaVA-1.6-7B with LoRA r 128 / alpha 256.
- Paper hyperparameters (Appendix A): a GRID, the point chosen per run not disclosed: LR {1e-7, 5e-7, 1e-6,
  5e-6}, projector LR {2e-5, 2e-6, 2e-7} (`projector_learning_rate`), epochs {3, 5, 7}, batch {16, 32, 48},
  beta_DPO {0.05, 0.1, 0.2, 0.5}, beta_IPO {0.8, 0.9, 1.0}, beta_SLiC {0.02, 0.1, 0.2}. `preset=paper` sets
  the disclosed single values (LoRA, r 128, alpha 256); the grid values stay the user's choice.
- Data: JSONL / saved HF dataset rows {image, prompt, chosen, rejected} (training/data.py), validated before
  training. With no `data`, the embedded world's synthetic pairs (training/synthetic.py): clean ground-truth
  descriptions as chosen, the same with one inserted co-occurring absent object as rejected.
- Reference: log-probs precomputed once with the starting weights (or `ref_model`, a separate checkpoint)
  and cached on disk (training/ref_cache.py); `precompute_ref=false` runs the reference every step.
- Defaults for the DPO family on the world (also bdhs-dpo, online-dpo): lr 1e-5, 8 pairs per step, beta
  0.1, and an SFT term of weight 2.0 on the chosen response (RPO-style anchor, NOT in the BDHS study; set
  sft_weight=0 for its plain DPO). Chosen on a held-out world split; without the anchor DPO on the world
  lowers the chosen likelihood and recall (training/RESULTS.md, "What I tried").
- Parity: loss equals TRL 1.16 DPOTrainer (loss_type sigmoid, ipo, hinge, sft) within 1e-5 on a tiny-LLaVA
  batch (tests/test_training_trl.py).
- Tokenization (BOS): a training sequence is tokenized exactly as evaluation tokenizes the prompt
  (PairBatcher -> HFModel.build_inputs: the processor's own encoding of the chat template, which adds BOS for
  Llama/LLaVA tokenizers, as HF generation and lmms-eval do). TRL 1.16 tokenizes the rendered template with
  add_special_tokens=False, so on a template that does not write BOS its sequences lack it; end to end on rows
  that is the only difference (ids equal after halbench's BOS; loss 1.27e-2 apart on the tiny test model), and
  with a BOS-writing template the two build identical rows and losses (tests/test_training_trl.py, rows tests).
- Logged per step: loss, dpo_loss, sft_loss, rewards/chosen, rewards/rejected, rewards/margins,
  rewards/accuracies, logps/chosen, logps/rejected, kl. `kl` is the mean policy-minus-reference log-ratio
  over the batch's responses; these are data responses, not policy samples, so it is a drift indicator, not
  an unbiased KL estimate (online DPO's `kl` is, on its own samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from halbench.errors import HalbenchError
from halbench.runs import atomic_write_json
from halbench.training.base import TrainConfig, TrainingMethod, hp
from halbench.training.data import PreferenceRow, load_preferences, validate_rows
from halbench.training.losses import dpo_rewards, dpo_sigmoid, ipo, sft_nll, slic_hinge
from halbench.training.loop import Session, run_training
from halbench.training.ref_cache import RefLogpCache, cache_root, data_fingerprint, precompute
from halbench.training.synthetic import WorldDataSettings, world_source

PAPER = ("Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290); multimodal setting: "
         "Amirloo et al. 2024, Understanding Alignment in Multimodal LLMs (arXiv 2407.02477)")


@dataclass
class DPOSettings:
    """The loss settings every DPO-family method shares (mixed into each method's Config)."""

    beta: float = hp(0.1, "Temperature: beta_DPO (sigmoid), tau of IPO, beta_SLiC (margin 1/beta) of SLiC.",
                     "grid: DPO {0.05, 0.1, 0.2, 0.5}, IPO {0.8, 0.9, 1.0}, SLiC {0.02, 0.1, 0.2} (BDHS study, "
                     "Appendix A; chosen value not disclosed)")
    loss_type: str = hp("sigmoid", "'sigmoid' (DPO, Eq. 3 of the BDHS study), 'ipo' or 'slic' (hinge).",
                        "sigmoid (DPO); IPO and SLiC compared in Table 12")
    label_smoothing: float = hp(0.0, "Conservative-DPO label smoothing eps (sigmoid only).", 0.0)
    sft_weight: float = hp(2.0, "Weight of the token-mean NLL of the chosen response added to the loss (2.0: "
                           "without it the chosen likelihood collapses on the world; training/RESULTS.md).",
                           "0 (plain DPO/IPO/SLiC in the BDHS study)")
    # shared-loop defaults overridden for the DPO family: values chosen on a held-out world split
    learning_rate: float = hp(1e-5, "AdamW peak learning rate (chosen on a held-out world split, "
                              "training/RESULTS.md).", "grid {1e-7, 5e-7, 1e-6, 5e-6} (BDHS study, Appendix A; "
                              "chosen value not disclosed)")
    per_device_batch_size: int = hp(8, "Preference pairs (or prompts) per process per micro-batch.",
                                    "global batch grid {16, 32, 48} (BDHS study, Appendix A)")

    def check_loss(self) -> None:
        if self.loss_type not in ("sigmoid", "ipo", "slic"):
            raise HalbenchError(f"loss_type must be 'sigmoid', 'ipo' or 'slic', got {self.loss_type!r}")
        if self.beta <= 0:
            raise HalbenchError(f"beta must be > 0, got {self.beta}")


@dataclass
class Config(WorldDataSettings, DPOSettings, TrainConfig):
    def check(self) -> None:
        super().check()
        self.check_loss()
        self.check_world()


# -- the loss on one batch ---------------------------------------------------------------------------------
def pair_loss(cfg: DPOSettings, session: Session, batch: dict[str, Any], ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """DPO/IPO (+SFT) loss on a [chosen_1..B, rejected_1..B] batch and its reference log-probs [B]."""
    logps, mask = session.logps(session.model, batch)
    return loss_from_logps(cfg, logps, mask, ref_chosen.to(logps), ref_rejected.to(logps))


def loss_from_logps(cfg: DPOSettings, logps: torch.Tensor, mask: torch.Tensor, ref_chosen: torch.Tensor,
                    ref_rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    seq, n_tok = logps.sum(1), mask.sum(1)
    pol_c, pol_r = seq.chunk(2)
    n_c, n_r = n_tok.chunk(2)
    if cfg.loss_type == "ipo":
        losses = ipo(pol_c, pol_r, ref_chosen, ref_rejected, cfg.beta, n_c, n_r)
    elif cfg.loss_type == "slic":
        losses = slic_hinge(pol_c, pol_r, ref_chosen, ref_rejected, cfg.beta)
    else:
        losses = dpo_sigmoid(pol_c, pol_r, ref_chosen, ref_rejected, cfg.beta, cfg.label_smoothing)
    loss = dpo_loss = losses.mean()
    metrics: dict[str, Any] = {"dpo_loss": dpo_loss.detach()}
    if cfg.sft_weight:
        sft = sft_nll(logps.chunk(2)[0], mask.chunk(2)[0])
        loss = loss + cfg.sft_weight * sft
        metrics["sft_loss"] = sft.detach()
    r_c, r_r = dpo_rewards(pol_c, pol_r, ref_chosen, ref_rejected, cfg.beta)
    metrics.update({
        "rewards/chosen": r_c.mean(), "rewards/rejected": r_r.mean(), "rewards/margins": (r_c - r_r).mean(),
        "rewards/accuracies": (r_c > r_r).float().mean(), "logps/chosen": pol_c.detach().mean(),
        "logps/rejected": pol_r.detach().mean(), "kl": ((r_c + r_r) / (2 * cfg.beta)).mean(),
    })
    return loss, metrics


# -- data + reference ------------------------------------------------------------------------------------
def load_pairs(session: Session, source: str | Path) -> list[PreferenceRow]:
    """Load and validate preference rows (before any training); the report goes to OUTPUT/train."""
    cfg = session.cfg
    rows, parse_problems = load_preferences(source, cfg.image_root)
    report = validate_rows(rows, source=str(source), encoder=session.batcher, bad_rows=cfg.bad_rows,
                           parse_problems=parse_problems)
    if session.accelerator.is_main_process:
        atomic_write_json(session.train_dir / "data_report.json", report.to_json())
    session.accelerator.print(report.summary())
    for p in report.problems[:20]:
        session.accelerator.print(f"  skipped {source}:{p.row}: {p.reason}")
    return report.kept


def reference_logps(session: Session, rows: list[PreferenceRow]) -> torch.Tensor:
    """[N, 2] reference (chosen, rejected) log-probs of the starting weights, from the disk cache if there."""
    cfg, policy = session.cfg, session.policy

    @torch.no_grad()
    def compute(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = session.batcher.pairs([rows[i] for i in idx])
        if cfg.ref_model:  # a separate reference checkpoint
            return session.ref_logps(batch)[0].sum(1).chunk(2)
        with session.initial_logps_context():
            logps, _ = session.logps(policy, batch)
        return logps.sum(1).chunk(2)

    from halbench.models.hf import dir_fingerprint

    model_fp = dir_fingerprint(session.ref_model_path) if cfg.ref_model else session.hf.fingerprint()
    data_fp = data_fingerprint(rows, cfg.max_length)
    meta = {"model": str(session.ref_model_path), "model_fingerprint": model_fp, "data_fingerprint": data_fp,
            "n_rows": len(rows)}
    was_training = policy.training
    policy.eval()
    cache = RefLogpCache(cache_root(cfg.ref_cache_dir))
    logps, cached = precompute(session.accelerator, len(rows), cfg.per_device_batch_size, compute, cache,
                               model_fp, data_fp, meta)
    policy.train(was_training)
    session.accelerator.print(f"reference log-probs {'loaded from' if cached else 'cached to'} "
                              f"{cache.path(model_fp, data_fp)}")
    return logps


def offline_step(cfg: DPOSettings, rows: list[PreferenceRow], ref: torch.Tensor | None):
    """The step function of offline DPO over `rows` (ref: precomputed [N, 2] or None = live reference)."""

    def step(session: Session, idx: list[int]):
        batch = session.batcher.pairs([rows[i] for i in idx])
        if ref is None:
            ref_c, ref_r = session.ref_logps(batch)[0].sum(1).chunk(2)
        else:
            ref_c, ref_r = ref[idx, 0], ref[idx, 1]
        return pair_loss(cfg, session, batch, ref_c, ref_r)

    return step


def train_on_pairs(session: Session, rows: list[PreferenceRow], callbacks=()) -> Path:
    cfg = session.cfg
    ref = reference_logps(session, rows) if cfg.precompute_ref else None
    return session.fit(len(rows), offline_step(cfg, rows, ref), callbacks)


def train(cfg: Config, callbacks=()) -> Path:
    """Offline DPO; returns OUTPUT/train/final (a standard HF checkpoint dir)."""

    def body(session: Session) -> Path:
        return train_on_pairs(session, load_pairs(session, world_source(session, cfg)), callbacks)

    return run_training(cfg, "dpo", body)


METHOD = TrainingMethod(
    name="dpo", Config=Config, train=train, paper=PAPER,
    description="Offline DPO / IPO / SLiC on image preference pairs (JSONL or HF dataset), optional SFT term.",
)

