"""FSDP on 2 CPU processes (gloo): halbench's DPO step (PairBatcher batches, token_logps, dpo_sigmoid) on a
tiny LLaVA whose decoder layers and root are sharded with torch's FSDP2 `fully_shard` gives the same losses
and final weights as DDP over the same 2 processes.

Why torch's FSDP2 directly and not `accelerate launch --use_fsdp`: accelerate 1.15 enables FSDP only for GPU-like
devices; on CPU `Accelerator(cpu=True)` becomes MULTI_CPU = DDP over gloo (and `accelerate launch --cpu
--num_processes 2` silently runs one process). FSDP2's `fully_shard` is what accelerate's `fsdp_version: 2`
calls per wrapped layer (examples/accelerate/fsdp.yaml), so this checks that halbench's model + loss shard
and train correctly; accelerate's FSDP plumbing itself needs GPUs (see benchmarks/README.md, what was
verified where). Tolerance: 1e-5 on each step's loss, 1e-4 on weights (float summation order differs between
all-reduce and reduce-scatter; observed ~1e-7 / ~1e-6).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_training_fixtures import make_images, tiny_llava  # noqa: F401

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import json, os, sys
import torch
import torch.distributed as dist
sys.path.insert(0, {repo!r})
from halbench.models.hf import HFModel
from halbench.training.data import PairBatcher, PreferenceRow
from halbench.training.losses import dpo_sigmoid, token_logps

mode, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
images = sys.argv[4:]
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
hf = HFModel(model_dir, batch_size=2)
model = hf.model
for name, p in model.named_parameters():
    if ".vision_tower." in "." + name:
        p.requires_grad_(False)  # halbench's default: vision tower frozen
ref = HFModel(model_dir).model.requires_grad_(False)
if mode == "fsdp":
    from torch.distributed.fsdp import fully_shard
    for layer in model.model.language_model.layers:
        fully_shard(layer)
    fully_shard(model)
else:
    model = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
texts = [("A dog and a cat.", "A dog, a cat and a car."), ("A pizza on a table.", "A pizza."),
         ("Two buses on a road.", "Two buses and a train."), ("A clock on a wall.", "A clock and a vase.")]
rows = [PreferenceRow(id=str(i), image=images[i % len(images)], prompt="Describe this image.", chosen=c, rejected=r)
        for i, (c, r) in enumerate(texts)]
batcher = PairBatcher(hf, 512)
losses = []
for step in range(3):
    mine = rows[rank::world]  # 2 pairs per process, same global batch every step
    batch = batcher.pairs(mine)
    kw = {{k: v for k, v in batch.items() if k != "labels"}}
    logps, mask = token_logps(model(**kw, use_cache=False).logits, batch["labels"])
    with torch.no_grad():
        ref_lp, _ = token_logps(ref(**kw, use_cache=False).logits, batch["labels"])
    pc, pr = (logps * mask).sum(1).chunk(2)
    rc, rr = (ref_lp * mask).sum(1).chunk(2)
    loss = dpo_sigmoid(pc, pr, rc, rr, beta=0.1)
    loss = loss[0] if isinstance(loss, tuple) else loss
    loss = loss.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    losses.append(total.item() / world)
if mode == "fsdp":
    from torch.distributed.tensor import DTensor
    sharded = [p for p in model.parameters() if isinstance(p, DTensor)]
    assert sharded, "fully_shard left no DTensor parameter"
    local = sum(p.to_local().numel() for p in sharded)
    full = sum(p.numel() for p in sharded)
    assert local < full, (local, full)  # each rank holds a shard, not the whole model
    state = {{n: (p.full_tensor() if isinstance(p, DTensor) else p).detach() for n, p in model.named_parameters()}}
else:
    state = {{n.removeprefix("module."): p.detach() for n, p in model.named_parameters()}}
if rank == 0:
    torch.save(state, out + ".pt")
    frac = (local / full) if mode == "fsdp" else 1.0
    json.dump({{"losses": losses, "local_fraction": frac}}, open(out + ".json", "w"))
dist.destroy_process_group()
'''


def _run(mode: str, script: Path, model: Path, out: Path, images: list[str], port: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(script), mode, str(model), str(out), *images]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(Path(str(out) + ".json").read_text())


@pytest.mark.slow
def test_fsdp2_on_two_gloo_processes_matches_ddp(tiny_llava, tmp_path):  # noqa: F811
    import torch

    if not torch.distributed.is_gloo_available():
        pytest.skip("this torch has no gloo backend")
    script = tmp_path / "fsdp_step.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    images = [str(tmp_path / p) for p in make_images(tmp_path, 2)]
    fsdp = _run("fsdp", script, tiny_llava, tmp_path / "fsdp", images, 29631)
    ddp = _run("ddp", script, tiny_llava, tmp_path / "ddp", images, 29632)
    print("losses fsdp", fsdp["losses"], "ddp", ddp["losses"], "local shard", fsdp["local_fraction"])
    assert fsdp["local_fraction"] <= 0.6  # about half of every sharded parameter per rank
    assert len(fsdp["losses"]) == 3 and fsdp["losses"][0] != fsdp["losses"][2]  # it trained
    for a, b in zip(fsdp["losses"], ddp["losses"]):
        assert a == pytest.approx(b, abs=1e-5)
    w_fsdp, w_ddp = torch.load(tmp_path / "fsdp.pt"), torch.load(tmp_path / "ddp.pt")
    assert set(w_fsdp) == set(w_ddp)
    assert max((w_fsdp[k] - w_ddp[k]).abs().max().item() for k in w_ddp) < 1e-4
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load(name, kind):
    """Each examples/accelerate/*.yaml is read by accelerate's own config loader, with the settings the README
    documents (FSDP2 with layer wrapping and full state dicts; ZeRO-3 saving 16-bit full weights)."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(REPO / "examples" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.mixed_precision == "bf16" and cfg.num_machines == 1
    if name == "fsdp":
        fc = cfg.fsdp_config
        assert fc["fsdp_version"] == 2 and fc["fsdp_state_dict_type"] == "FULL_STATE_DICT"
        assert set(fc["fsdp_transformer_layer_cls_to_wrap"].split(",")) == {"LlamaDecoderLayer", "CLIPEncoderLayer"}
    if name == "deepspeed_zero3":
        dc = cfg.deepspeed_config
        assert dc["zero_stage"] == 3 and dc["zero3_save_16bit_model"] is True
        from halbench.training.base import TrainConfig

        defaults = TrainConfig.__dataclass_fields__
        assert dc["gradient_accumulation_steps"] == defaults["gradient_accumulation_steps"].default
        assert dc["gradient_clipping"] == defaults["max_grad_norm"].default
