"""training/losses.py: values against hand computation, and log-prob gathering against TRL's fused LM head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from halbench.training.losses import dpo_rewards, dpo_sigmoid, ipo, sequence_logps, sft_nll, token_logps


def _rand_batch(seed=0, b=3, t=7, v=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, :3] = -100  # prompt
    labels[1, -2:] = -100  # padding
    return logits, labels


def test_token_logps_equals_log_softmax_gather():
    logits, labels = _rand_batch()
    logps, mask = token_logps(logits, labels)
    ref = torch.log_softmax(logits[:, :-1], -1)
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = labels[b, t + 1]
            expected = ref[b, t, y] if y != -100 else torch.tensor(0.0)
            assert mask[b, t] == (y != -100)
            assert logps[b, t] == pytest.approx(float(expected), abs=1e-6)
    seq, n = sequence_logps(logits, labels)
    assert torch.allclose(seq, logps.sum(1)) and n.tolist() == [4, 2, 4]


def test_token_logps_matches_trl_fused_lm_head():
    """Our gathering vs TRL 1.16's fused LM head (what DPOTrainer sums) on a tiny Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (2, 9))
    labels = ids.clone()
    labels[:, :4] = -100
    ours, mask = token_logps(model(input_ids=ids).logits, labels)
    add_fused_lm_head(model)
    theirs = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert theirs.shape == ours.shape
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours.sum(1), theirs.sum(1), atol=1e-5)


def test_dpo_sigmoid_values():
    z = torch.zeros(2)
    assert dpo_sigmoid(z, z, z, z, beta=0.1).tolist() == pytest.approx([math.log(2)] * 2)
    pc, pr, rc, rr = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5])
    margin = (-3 + 4) - (-5 + 4.5)  # 1.5
    expected = -math.log(1 / (1 + math.exp(-0.2 * margin)))
    assert dpo_sigmoid(pc, pr, rc, rr, beta=0.2).item() == pytest.approx(expected, rel=1e-6)
    # gradient raises chosen and lowers rejected
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    dpo_sigmoid(pc, pr, rc, rr, beta=0.2).sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()


def test_label_smoothing_half_is_symmetric():
    pc, pr, z = torch.tensor([2.0, -1.0]), torch.tensor([-1.0, 2.0]), torch.zeros(2)
    loss = dpo_sigmoid(pc, pr, z, z, beta=0.5, label_smoothing=0.5)
    assert loss[0].item() == pytest.approx(loss[1].item())
    assert dpo_sigmoid(pc, pr, z, z, 0.5, 0.1)[0] > dpo_sigmoid(pc, pr, z, z, 0.5, 0.0)[0]


def test_ipo_is_length_normalised_and_zero_at_target():
    beta = 0.25  # target per-token margin 1 / (2 beta) = 2
    n_c, n_r = torch.tensor([4]), torch.tensor([2])
    pc, pr, z = torch.tensor([8.0]), torch.tensor([0.0]), torch.zeros(1)  # 8/4 - 0/2 = 2
    assert ipo(pc, pr, z, z, beta, n_c, n_r).item() == pytest.approx(0.0)
    assert ipo(torch.tensor([4.0]), pr, z, z, beta, n_c, n_r).item() == pytest.approx(1.0)  # (1 - 2)^2


def test_sft_nll_is_token_mean_over_batch():
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert sft_nll(logps, mask).item() == pytest.approx(7 / 3)


def test_dpo_rewards_are_detached():
    pc = torch.tensor([1.0], requires_grad=True)
    rc, rr = dpo_rewards(pc, torch.tensor([0.0]), torch.tensor([0.5]), torch.tensor([1.0]), beta=0.1)
    assert not rc.requires_grad and rc.item() == pytest.approx(0.05) and rr.item() == pytest.approx(-0.1)


def test_cross_entropy_path_keeps_float32_for_half_logits():
    logits, labels = _rand_batch()
    ours, _ = token_logps(logits.to(torch.bfloat16), labels)
    assert ours.dtype == torch.float32
    ref = -F.cross_entropy(logits.to(torch.bfloat16).float()[:, :-1].transpose(1, 2),
                           labels[:, 1:].clamp(min=0), reduction="none") * (labels[:, 1:] != -100)
    assert torch.allclose(ours, ref)


def test_slic_hinge_equals_trl_hinge_formula_and_margin():
    from halbench.training.losses import slic_hinge

    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 3 for _ in range(4))
    for beta in (0.02, 0.1, 0.2):  # the BDHS study's beta_SLiC grid
        h = (pc - rc) - (pr - rr)
        assert torch.allclose(slic_hinge(pc, pr, rc, rr, beta), torch.clamp(1 - beta * h, min=0))
    # zero exactly when the log-ratio margin reaches 1 / beta; linear (slope -beta) below it
    z = torch.zeros(1)
    assert float(slic_hinge(torch.tensor([10.0]), z, z, z, 0.1)) == 0.0
    assert float(slic_hinge(torch.tensor([5.0]), z, z, z, 0.1)) == pytest.approx(0.5)


def test_avg_dpo_is_the_gamma_weighted_mean():
    from halbench.training.losses import avg_dpo

    a, b = torch.tensor(0.8), torch.tensor(0.2)
    assert float(avg_dpo(a, b)) == pytest.approx(0.5) and float(avg_dpo(a, b, 1.0)) == pytest.approx(0.8)
