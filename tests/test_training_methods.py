"""Method registry and configs, online/mixed DPO, and the embedded world's synthetic DPO pairs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from halbench import registry
from halbench.errors import HalbenchError
from halbench.training import dpo, online_dpo

from .test_training_fixtures import _private_cache, cfg_kwargs, pairs_file, tiny_llava  # noqa: F401

MINE = ("dpo", "online-dpo", "bdhs-dpo")


@pytest.mark.parametrize("name", MINE)
def test_method_registered_with_documented_config(name):
    m = registry.load("method", name)
    assert m.name == name and m.paper and callable(m.train)
    for f in dataclasses.fields(m.Config):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help"
        assert "paper" in f.metadata, f"{name}.{f.name} has no paper value"
    names = {f.name for f in dataclasses.fields(m.Config)}
    assert {"model", "output_dir", "data", "seed"} <= names
    assert "[paper: " in m.card()


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(HalbenchError, match="loss_type"):
        dpo.Config(output_dir=str(tmp_path), loss_type="hinge").check()
    with pytest.raises(HalbenchError, match="bad_rows"):
        dpo.Config(output_dir=str(tmp_path), bad_rows="ignore").check()
    with pytest.raises(HalbenchError, match="num_samples"):
        online_dpo.Config(output_dir=str(tmp_path), num_samples=1).check()


def length_reward(rows, responses):
    """A deterministic test reward: longer is better (ties broken by the text)."""
    return [len(r.split()) + 0.001 * (sum(map(ord, r)) % 97) for r in responses]


def test_online_dpo_forms_pairs_from_policy_samples(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    seen = []

    def reward(rows, responses):
        seen.append(list(responses))
        return length_reward(rows, responses)

    cfg = online_dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=2, num_samples=3,
                                         max_new_tokens=6))
    online_dpo.train(cfg, reward=reward)
    assert len(seen) == 2 and all(len(s) == 2 * 3 for s in seen)
    rec = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert rec[0]["online/pairs"] + rec[0]["online/ties"] == 2
    assert rec[0]["reward/chosen"] >= rec[0]["reward/rejected"]
    assert rec[0]["mixed/offline_fraction"] == 0.0


def test_mixed_dpo_uses_offline_pairs_half_the_time(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    cfg = online_dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=4, num_samples=2,
                                         max_new_tokens=4, mixed=True, reward="py:tests.test_training_methods:length_reward"))
    online_dpo.train(cfg)
    rec = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    frac = [r["mixed/offline_fraction"] for r in rec]
    assert len(frac) == 4 and 0.0 < sum(frac) / 4 < 1.0


def test_reward_ranker_pairs_best_with_worst():
    from halbench.training.data import PreferenceRow
    from halbench.training.online_rankers import RewardRanker

    row = PreferenceRow(prompt="p", chosen="", rejected="")
    table = {"a": 0.5, "b": 2.0, "c": -1.0, "x": 1.0, "y": 1.0, "z": None}
    ranker = RewardRanker(lambda rows, texts: [table.get(t, 9.0) for t in texts])
    picked = ranker.pick([row] * 3, [["a", "b", None, "c"], ["x", "y"], ["x", "z"]])
    assert picked == [(1, 3), None, None]  # None sample excluded; tie: no pair; failed reward excluded
    st = ranker.stats()
    assert st["reward/chosen"] == 2.0 and st["reward/rejected"] == -1.0


def test_slic_loss_and_paper_preset(tmp_path):
    import torch

    from halbench.training.losses import slic_hinge

    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -1.5, -2.0))
    h = (-1.0 + 1.5) - (-3.0 + 2.0)  # 1.5
    assert float(slic_hinge(pc, pr, rc, rr, 0.1)) == pytest.approx(1 - 0.1 * h)
    assert float(slic_hinge(pc, pr, rc, rr, 1.0)) == 0.0  # margin 1/beta reached: no loss
    dpo.Config(output_dir=str(tmp_path), loss_type="slic").check()
    cfg = dpo.Config(output_dir=str(tmp_path), preset="paper")
    assert (cfg.lora, cfg.lora_r, cfg.lora_alpha) == (True, 128, 256)
    assert dpo.Config(output_dir=str(tmp_path), preset="paper", lora_r=8).lora_r == 8  # explicit value wins
    with pytest.raises(HalbenchError, match="unknown preset"):
        dpo.Config(output_dir=str(tmp_path), preset="nope")
    with pytest.raises(HalbenchError, match="ref_model"):
        dpo.Config(output_dir=str(tmp_path), ref_model=str(tmp_path / "missing")).check()


def test_separate_reference_checkpoint_and_projector_lr(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from halbench.testing.tiny import make_tiny_llava

    other = make_tiny_llava(tmp_path / "ref", seed=1)  # same tokenizer, different weights
    kw = cfg_kwargs(tiny_llava, pairs_file, tmp_path / "a", max_steps=1)
    dpo.train(dpo.Config(**kw))
    dpo.train(dpo.Config(**{**kw, "output_dir": str(tmp_path / "b"), "ref_model": str(other),
                            "projector_learning_rate": 1e-2}))
    a, b = (json.loads((tmp_path / d / "train" / "metrics.jsonl").read_text().splitlines()[0]) for d in "ab")
    # at step 1 the policy is the start: with its own reference the implicit rewards are 0, not with another
    assert a["rewards/chosen"] == pytest.approx(0.0, abs=1e-5) and abs(b["rewards/chosen"]) > 1e-3
    from halbench.training.loop import _param_groups

    cfg = dpo.Config(output_dir=str(tmp_path), projector_learning_rate=3e-4)
    from halbench.models.hf import HFModel

    groups = _param_groups(HFModel(tiny_llava).model, cfg)
    assert len(groups) == 2 and groups[1]["lr"] == 3e-4 and groups[1]["params"]


def test_chair_reward_prefers_correct_descriptions():
    from halbench.training.data import PreferenceRow

    reward = online_dpo.ChairReward()
    row = PreferenceRow(prompt="p", chosen="", rejected="", extra={"objects": ["dog", "cat"]})
    good, halluc, partial = reward([row] * 3, ["A dog and a cat.", "A dog, a cat and a car.", "A dog."])
    assert good == pytest.approx(1.0) and halluc == pytest.approx(0.0) and partial == pytest.approx(0.5)


def test_world_pairs_add_the_worlds_noise_object(tmp_path):
    from halbench.tasks.chair import ChairScorer
    from halbench.training.synthetic import world_pairs_file
    from halbench.world.captions import noise_object
    from halbench.world.cooccurrence import default_table

    path = world_pairs_file(tmp_path, n_images=30, seed=3)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) >= 25
    scorer, table = ChairScorer(), default_table()
    for r in rows:
        gt = set(r["objects"])
        chosen = scorer.score_caption(r["chosen"], gt)
        rejected = scorer.score_caption(r["rejected"], gt)
        assert chosen["hallucinated"] == [] and chosen["covered_gt_objects"] == sorted(gt)
        assert rejected["hallucinated"] == [r["inserted_object"]]
        assert r["inserted_object"] == noise_object(sorted(gt), table)[0]
        assert (tmp_path / r["image"]).is_file()
    mtime = path.stat().st_mtime_ns
    assert world_pairs_file(tmp_path, n_images=30, seed=3).stat().st_mtime_ns == mtime  # reused


def test_dpo_without_data_trains_on_world_pairs(tiny_llava, tmp_path):  # noqa: F811
    cfg = dpo.Config(**{**cfg_kwargs(tiny_llava, tmp_path, tmp_path / "out", max_steps=1), "data": None,
                        "world_images": 12})
    final = dpo.train(cfg)
    assert final.is_dir() and (tmp_path / "out" / "train" / "world_pairs" / "pairs.jsonl").is_file()


def test_halbench_train_command(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from halbench.cli import main

    res = CliRunner().invoke(main, ["train", "--method", "dpo", "--model", str(tiny_llava), "--data", str(pairs_file),
                                    "--output-dir", str(tmp_path), "--set", "max_steps=1", "--set", "save_steps=0",
                                    "--set", "per_device_batch_size=2"])
    assert res.exit_code == 0, res.output
    assert f"checkpoint: {tmp_path / 'train' / 'final'}" in res.output


def test_string_settings_are_coerced():
    cfg = dpo.Config(learning_rate="1e-4", max_steps="5", lora="true", beta="0.2")
    assert (cfg.learning_rate, cfg.max_steps, cfg.lora, cfg.beta) == (1e-4, 5, True, 0.2)
    with pytest.raises(HalbenchError, match="max_steps='x': expected int"):
        dpo.Config(max_steps="x")


def test_world_qa_rows_and_their_reward(tmp_path):
    from halbench.training.data import load_preferences
    from halbench.training.synthetic import world_pairs_file

    path = world_pairs_file(tmp_path, n_images=20, seed=0, qa_frac=1.0)
    rows, _ = load_preferences(path)
    qa = [r for r in rows if r.extra.get("gt_answer")]
    assert len(qa) == 20 and {r.chosen for r in qa} == {"Yes", "No"}
    for r in qa:
        obj = r.prompt[len("Is there a "):-len(" in the image?")].removeprefix("n ")
        assert (obj in r.extra["objects"]) == (r.chosen == "Yes") and r.rejected != r.chosen
    reward = online_dpo.ChairReward()
    assert reward([qa[0], qa[0]], [qa[0].chosen + ".", qa[0].rejected]) == [1.0, 0.0]


def test_sft_term_is_added_to_the_dpo_loss(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    dpo.train(dpo.Config(**{**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=2), "sft_weight": 2.0}))
    for rec in map(json.loads, (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()):
        assert rec["loss"] == pytest.approx(rec["dpo_loss"] + 2.0 * rec["sft_loss"], rel=1e-5)
        assert rec["sft_loss"] > 0
