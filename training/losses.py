"""Losses: pure functions of tensors (no models, no config objects), each citing its source.

Shapes: B = batch of preference pairs, T = sequence length, V = vocabulary.
Log-probabilities are summed over the response tokens only (labels != -100), as in DPO and in TRL's
DPOTrainer (trl 1.16 `_compute_loss`: `per_token_logps.sum(dim=1)` over the completion mask).

Parity: `dpo_sigmoid`, `ipo` and `sft_nll` equal TRL 1.16 DPOTrainer's loss_type "sigmoid", "ipo" and "sft"
on identical log-probs, and `token_logps` equals TRL's fused LM head log-probs on identical logits
(tests/test_losses.py); tests/test_training_trl.py compares a whole tiny-LLaVA batch against DPOTrainer.

The FiSAO engineer appends a "# --- FiSAO ---" section at the end of this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# -- log-probability gathering ------------------------------------------------------------------------
def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label_t | tokens < t) and the response mask.

    logits [B, T, V] from a causal LM, labels [B, T] with -100 outside the response (HF convention: labels are
    the input ids, the shift happens here). Returns (logps [B, T-1], mask [B, T-1] bool); logps are 0 where
    mask is False. Computed in float32 via cross_entropy (one fused log-softmax + gather).
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != -100
    safe = shift_labels.masked_fill(~mask, 0)
    logps = -F.cross_entropy(shift_logits.transpose(1, 2), safe, reduction="none")  # [B, T-1]
    return logps * mask, mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-prob per sequence [B] and the number of response tokens [B]."""
    logps, mask = token_logps(logits, labels)
    return logps.sum(dim=1), mask.sum(dim=1)


# -- preference losses ----------------------------------------------------------------------------------
def dpo_sigmoid(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                ref_rejected: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO loss per pair [B] (Rafailov et al. 2023, "Direct Preference Optimization", arXiv 2305.18290, Eq. 7):

        -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])

    With label_smoothing = eps > 0 this is conservative DPO (Mitchell 2023, "A note on DPO with noisy
    preferences"): (1-eps) * the above + eps * the same with chosen and rejected swapped (TRL's form).
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(beta * logits)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-beta * logits)
    return loss


def ipo(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor, beta: float, n_chosen: torch.Tensor, n_rejected: torch.Tensor) -> torch.Tensor:
    """IPO loss per pair [B] (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from
    Human Preferences", arXiv 2310.12036, Eq. 17, with tau = beta):

        (h - 1 / (2 * beta))^2,  h = log-ratio(y_w) / |y_w| - log-ratio(y_l) / |y_l|

    The per-token averaging of each log-ratio follows TRL (which states the IPO authors confirmed it); the
    paper's Eq. 17 writes sequence-level log-ratios.
    """
    chosen = (policy_chosen - ref_chosen) / n_chosen.clamp(min=1)
    rejected = (policy_rejected - ref_rejected) / n_rejected.clamp(min=1)
    return (chosen - rejected - 1.0 / (2.0 * beta)) ** 2


def sft_nll(chosen_token_logps: torch.Tensor, chosen_mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the chosen responses, averaged over all their tokens in the batch (scalar).

    The "SFT on chosen" term added to DPO, e.g. RPO (Pang et al. 2024, "Iterative Reasoning Preference
    Optimization", arXiv 2404.19733) and TRL's loss_type "sft" (same token-level mean). Inputs are the
    [B, T-1] outputs of `token_logps` for the chosen half of the batch.
    """
    return -chosen_token_logps[chosen_mask].mean()


def dpo_rewards(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Implicit DPO rewards beta * (log pi - log ref) for chosen and rejected [B] (DPO, Sec. 5; no gradient)."""
    with torch.no_grad():
        return beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)
