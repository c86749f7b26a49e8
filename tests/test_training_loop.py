"""The shared loop: every trainable parameter moves, frozen ones do not, LoRA, resume after a crash, status,
reference log-prob cache, and (slow) the 2-process run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from halbench.errors import HalbenchError
from halbench.training import dpo

from .test_training_fixtures import _private_cache, cfg_kwargs, load_weights, pairs_file, tiny_llava  # noqa: F401


def _initial_weights(model_dir: Path) -> dict:
    return load_weights(model_dir)


def test_every_trainable_parameter_changes_after_one_step(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    out = dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=1)))
    before, after = _initial_weights(tiny_llava), load_weights(out)
    assert before.keys() == after.keys()
    for name, w in before.items():
        changed = not torch.equal(w, after[name])
        if "vision_tower" in name:
            assert not changed, f"frozen {name} changed"
        else:
            assert changed, f"trainable {name} did not change"
    status = json.loads((tmp_path / "train" / "status.json").read_text())
    assert status["status"] == "ok" and status["checkpoint"] == str(out) and status["error"] is None
    rec = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert rec[0]["step"] == 1 and rec[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl", "lr"):
        assert key in rec[0]


def test_lora_trains_adapters_and_saves_a_merged_checkpoint(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from halbench.models.hf import HFModel

    out = dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=2, lora=True,
                                            lora_r=4, save_steps=1)))
    before, after = _initial_weights(tiny_llava), load_weights(out)
    assert before.keys() == after.keys()  # merged: a plain HF checkpoint
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"))
                           for k in changed)
    assert all("language_model" in k for k in changed)
    HFModel(out)  # loads like any checkpoint
    ckpt = tmp_path / "train" / "checkpoints" / "checkpoint-1"
    assert (ckpt / "adapter_config.json").is_file() and (ckpt / "training_state").is_dir()


def _losses(path: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


def test_resume_after_crash_matches_uninterrupted_run(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    """8 rows, 2 per step, 2 epochs = 8 steps; checkpoints every 3; crash after step 7 -> resume from
    checkpoint-6, mid-way through epoch 2. The result must equal an uninterrupted run exactly."""
    kw = dict(num_epochs=2, save_steps=3, save_total_limit=1)
    full = dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "a", **kw)))

    def crash(step):
        if step == 7:
            raise RuntimeError("simulated crash")

    cfg = dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "b", **kw))
    with pytest.raises(RuntimeError, match="simulated crash"):
        dpo.train(cfg, callbacks=[crash])
    status = json.loads((tmp_path / "b" / "train" / "status.json").read_text())
    assert status["status"] == "failed" and "simulated crash" in status["error"]
    assert [p.name for p in (tmp_path / "b" / "train" / "checkpoints").iterdir()] == ["checkpoint-6"]
    resumed = dpo.train(cfg)
    a, b = load_weights(full), load_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = _losses(tmp_path / "a" / "train" / "metrics.jsonl"), _losses(tmp_path / "b" / "train" / "metrics.jsonl")
    assert list(lb) == list(range(1, 9)) and la == lb
    # a different setting on top of those checkpoints is refused
    with pytest.raises(HalbenchError, match="different settings.*beta"):
        dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "b", beta=0.5, **kw)))


def test_reference_cache_is_keyed_by_model_and_data(tmp_path):
    from accelerate import PartialState

    from halbench.training.ref_cache import RefLogpCache, precompute

    calls = []

    def compute(idx):
        calls.append(list(idx))
        return torch.tensor([float(i) for i in idx]), torch.tensor([-float(i) for i in idx])

    cache = RefLogpCache(tmp_path)
    logps, cached = precompute(PartialState(), 5, 2, compute, cache, "modelA", "data1", {})
    assert not cached and logps[:, 0].tolist() == [0, 1, 2, 3, 4] and logps[:, 1].tolist() == [0, -1, -2, -3, -4]
    n = len(calls)
    assert precompute(PartialState(), 5, 2, compute, cache, "modelA", "data1", {})[1] and len(calls) == n
    precompute(PartialState(), 5, 2, compute, cache, "modelB", "data1", {})
    precompute(PartialState(), 5, 2, compute, cache, "modelA", "data2", {})
    assert len(calls) == 3 * n and len(list(cache.dir.glob("*.pt"))) == 3


def test_data_fingerprint_covers_image_bytes(tmp_path):
    from halbench.training.data import PreferenceRow
    from halbench.training.ref_cache import data_fingerprint

    img = tmp_path / "x.png"
    img.write_bytes(b"one")
    rows = [PreferenceRow("p", "a", "b", image=str(img))]
    fp1 = data_fingerprint(rows, 512)
    img.write_bytes(b"two")
    assert data_fingerprint(rows, 512) != fp1 and data_fingerprint(rows, 256) != data_fingerprint(rows, 512)


def test_precomputed_and_live_reference_give_the_same_training(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    a = dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "a", max_steps=2)))
    b = dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "b", max_steps=2,
                                          precompute_ref=False)))
    la, lb = _losses(tmp_path / "a" / "train" / "metrics.jsonl"), _losses(tmp_path / "b" / "train" / "metrics.jsonl")
    assert la[2] == pytest.approx(lb[2], abs=1e-5)
    wa, wb = load_weights(a), load_weights(b)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


_DIST_SCRIPT = """
import sys
from halbench.training.dpo import Config, train
model, data, out, bs = sys.argv[1:5]
train(Config(model=model, data=data, output_dir=out, per_device_batch_size=int(bs), num_epochs=1,
             learning_rate=1e-3, save_steps=0, warmup_ratio=0.0, seed=0, sft_weight=0.0))
"""


@pytest.mark.slow
def test_two_processes_reach_the_same_loss_as_one(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    """`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo) with 2 pairs per process vs one process
    with 4: same global batch, same data order, reference log-probs computed sharded over the 2 processes.
    Tolerance 1e-5 on every logged loss (observed ~1e-7: float summation order)."""
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate CLI not on PATH")
    script = tmp_path / "run.py"
    script.write_text(_DIST_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tiny_llava), str(pairs_file), str(tmp_path / "one"), "4"],
                         env={**env, "HALBENCH_CACHE_DIR": str(tmp_path / "c1")}, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
                          str(script), str(tiny_llava), str(pairs_file), str(tmp_path / "two"), "2"],
                         env={**env, "HALBENCH_CACHE_DIR": str(tmp_path / "c2")}, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    l1, l2 = _losses(tmp_path / "one" / "train" / "metrics.jsonl"), _losses(tmp_path / "two" / "train" / "metrics.jsonl")
    assert list(l1) == list(l2) == [1, 2]
    for step in l1:
        assert l1[step] == pytest.approx(l2[step], abs=1e-5)
    w1, w2 = load_weights(tmp_path / "one" / "train" / "final"), load_weights(tmp_path / "two" / "train" / "final")
    # Adam divides by sqrt(v): ~1e-7 differences in summed gradients move near-zero-gradient weights by
    # up to a few 1e-5 at lr=1e-3, so weights are compared at 1e-4
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4


def test_finished_run_is_not_retrained(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    cfg = dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=1))
    final = dpo.train(cfg)
    mtime = (final / "model.safetensors").stat().st_mtime_ns
    assert dpo.train(cfg) == final and (final / "model.safetensors").stat().st_mtime_ns == mtime
    dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=1, resume=False)))
    assert (final / "model.safetensors").stat().st_mtime_ns != mtime


def test_a_rebuilt_starting_model_is_a_new_run(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from halbench.testing.tiny import make_tiny_llava

    model = make_tiny_llava(tmp_path / "m", seed=0)
    cfg = dpo.Config(**cfg_kwargs(model, pairs_file, tmp_path / "out", max_steps=2, save_steps=1))
    dpo.train(cfg)
    make_tiny_llava(tmp_path / "m", seed=1)  # same path, other weights
    with pytest.raises(HalbenchError, match="model_fingerprint"):
        dpo.train(cfg)
