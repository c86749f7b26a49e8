"""training/progress.py: the bar's postfix and the summary line (main process only)."""

from __future__ import annotations

import torch

from halbench.training.progress import TrainProgress


def test_progress_shows_loss_and_margin_and_sums_up(capsys):
    p = TrainProgress(total=3, initial=0, enabled=True, desc="dpo")
    for step in range(3):
        for micro in range(2):  # two micro-batches per optimizer step: the bar shows their mean
            p.add({"loss": torch.tensor(1.0 - 0.2 * step + 0.1 * micro), "rewards/margins": 0.1 * step, "kl": None})
        p.step()
    assert p.postfix({"loss": 0.55, "rewards/margins": 0.2}) == {"loss": "0.5500", "margin": "+0.200"}
    p.close()
    err = capsys.readouterr().err
    assert "dpo: 3 step(s) in" in err and "loss 1.0500 -> 0.6500" in err and "margin 0.0000 -> 0.2000" in err


def test_fisao_reward_and_resume_and_silent_ranks(capsys):
    p = TrainProgress(total=10, initial=8, enabled=True, desc="fisao")
    p.add({"loss": 0.5, "reward/mean": -0.25})
    p.step()
    assert p.reward_key() == ("reward/mean", "reward")
    p.close()
    assert "(resumed at step 8)" in capsys.readouterr().err
    quiet = TrainProgress(total=5, initial=0, enabled=False, desc="dpo")
    quiet.add({"loss": 1.0})
    quiet.step()
    quiet.close()
    assert capsys.readouterr().err == ""
