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

    With label_smoothing = eps > 0 this is conservative DPO (cDPO; Mitchell 2023, "A note on DPO with noisy
    preferences"): (1-eps) * the above + eps * the same with chosen and rejected swapped. (TRL 1.16's "sigmoid"
    has no smoothing; parity tests use eps = 0.)
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


def slic_hinge(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC calibration loss per pair [B] (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with
    Human Feedback", arXiv 2305.10425, Eq. 2: max(0, delta - log P(y+) + log P(y-))), in the
    reference-normalised form TRL's loss_type "hinge" implements and the BDHS study's beta_SLiC parametrises
    (Table 12; grid {0.02, 0.1, 0.2}), i.e. margin delta = 1 / beta on the DPO log-ratio h:

        max(0, 1 - beta * h),  h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))

    SLiC-HF's regulariser on the SFT targets corresponds to halbench's separate `sft_weight` term.
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return torch.relu(1 - beta * logits)


def avg_dpo(loss_external: torch.Tensor, loss_bdhs: torch.Tensor, gamma: float = 0.5) -> torch.Tensor:
    """Avg-DPO (BDHS study, Amirloo et al. 2024, arXiv 2407.02477, Eq. 5): gamma * L(y+, y_ext-) +
    (1 - gamma) * L(y+, y_bdhs-) for one chosen answer with an external and a BDHS rejected one; gamma = 0.5
    follows POVID's public code, which averages the two DPO losses."""
    return gamma * loss_external + (1 - gamma) * loss_bdhs


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


# --- FiSAO ---
# Owned by the FiSAO engineer (training/fisao.py). Source: Cui et al., "Fine-Grained Verifiers: Preference
# Modeling as Next-token Prediction in Vision-Language Alignment" (FiSAO), arXiv 2410.14148, ICLR 2025.
# The paper leaves Eq. 7/8 (score, normaliser, final reward) and the optimiser under-defined and the
# official repository (github.com/gzcch/FISAO_ICLR) holds no code (../shared/PAPERS.md), so the equations
# below are reconstructions, not quotes; training/fisao.py's card lists every reconstructed choice.

def fisao_normalize_reward(scores: torch.Tensor, baseline_correct: float, baseline_hallucinated: float,
                           mapping: str = "linear", strict: bool = True) -> torch.Tensor:
    """Verifier scores -> rewards in [-1, 1], calibrated by the two baselines (FiSAO Sec. 3, Fig. 3 step 1:
    "the fine-grained reward based on the baseline score obtained from correct and hallucinated tokens").

    linear:    r = clamp((s - m) / h, -1, 1), m = (b_c + b_h) / 2, h = (b_c - b_h) / 2, so the mean score of
               hallucinated objects maps to -1, of correct objects to +1 (reconstruction).
    threshold: r = +1 if s >= b_c, -1 if s <= b_h, else 0 (reconstruction; a sparser variant).
    Inverted baselines (b_c <= b_h) raise, unless strict=False: then the higher baseline maps to +1 and the lower
    to -1, i.e. the verifier's own direction is kept (never flipped using ground truth).
    """
    if baseline_correct <= baseline_hallucinated:
        if strict:
            raise ValueError(f"baseline of correct objects ({baseline_correct:.4f}) must exceed that of "
                             f"hallucinated ones ({baseline_hallucinated:.4f})")
        baseline_correct, baseline_hallucinated = baseline_hallucinated + 1e-6, baseline_correct
    if mapping == "linear":
        mid = (baseline_correct + baseline_hallucinated) / 2
        half = (baseline_correct - baseline_hallucinated) / 2
        return ((scores - mid) / half).clamp(-1.0, 1.0)
    if mapping == "threshold":
        return (scores >= baseline_correct).to(scores.dtype) - (scores <= baseline_hallucinated).to(scores.dtype)
    raise ValueError(f"unknown reward mapping {mapping!r} (linear, threshold)")


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) on tokens sampled from pi: exp(q) - q - 1 with q = ref - logp
    (Schulman 2020, "Approximating KL divergence", k3; non-negative and unbiased; the GRPO penalty form)."""
    q = ref_logps - logps
    return torch.exp(q) - q - 1.0


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go R_t = r_t + gamma * R_{t+1} over response tokens [B, T-1] (0 outside the mask): the
    Monte-Carlo return PPO's advantage estimates without a critic (GAE with lambda = 1 and V = 0; Schulman et
    al. 2016, arXiv 1506.02438). gamma = 0 leaves each token its own reward."""
    if gamma == 0:
        return rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def fisao_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                      advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2,
                      kl_beta: float = 0.05) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level PPO-clip objective with a KL penalty to the reference (scalar loss, detached stats).

        L = mean_t [ -min(rho_t A_t, clip(rho_t, 1-eps, 1+eps) A_t) + beta * KL_t ],  rho_t = pi/pi_old

    PPO-clip: Schulman et al. 2017 (arXiv 1707.06347), Eq. 7, applied per token with the per-token
    (fine-grained) reward as the advantage A_t (no critic: FiSAO's rewards are already per token and
    baseline-centred); KL_t = `kl_k3` added to the loss as in GRPO (Shao et al. 2024, arXiv 2402.03300,
    Eq. 3). The mean runs over all response tokens of the batch (mask). With one update per rollout batch
    (old_logps = logps.detach()), rho = 1 and this is the per-token policy gradient -A_t log pi(y_t).
    All tensors [B, T-1] (the layout of `token_logps`).
    """
    m = mask.to(logps.dtype)
    n = m.sum().clamp(min=1.0)
    ratio = torch.exp(logps - old_logps)
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    kl = kl_k3(logps, ref_logps)
    pg_loss = -(surrogate * m).sum() / n
    kl_mean = (kl * m).sum() / n
    stats = {"pg_loss": pg_loss.detach(), "kl": kl_mean.detach(),
             "clip_frac": (((ratio - 1).abs() > clip_eps).to(m.dtype) * m).sum().detach() / n}
    return pg_loss + kl_beta * kl_mean, stats
