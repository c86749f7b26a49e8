"""The recipe that rebuilds a world from a seed: data -> CLIP -> VLM -> POPE files -> world.json.

    halbench world build --out DIR [--seed 0] [--fast]

Stages (each with its own progress bar):
  1. render the training split (n_train images, in memory) and the validation split;
  2. write the validation split (and optionally `write_train` training images) in COCO format;
  3. train the tiny CLIP (clip_train.py) and save it to DIR/clip;
  4. build the VLM on that CLIP's vision tower, train projector + LM (vlm_train.py), save to DIR/vlm;
  5. build POPE random/popular/adversarial files with halbench.tasks.pope.build_pope into DIR/pope;
  6. write DIR/world.json (config, seed, per-stage seconds, file sizes).
Everything is seeded (numpy Generators and torch.manual_seed); on the same torch build and thread count a seed
reproduces the same data bytes and, up to floating-point reduction order, the same weights.
`FAST` is a seconds-long variant for tests: same code path, tiny data, tiny models, a few steps.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from halbench.world.clip_train import ClipConfig, build_clip_tokenizer, clip_presence_auroc, make_clip, save_clip, train_clip
from halbench.world.cooccurrence import default_table
from halbench.world.generate import generate_split, write_coco
from halbench.world.vlm_train import (DETAIL_PROMPT, SHORT_PROMPTS, VQA_PROMPT, SequenceBuilder, VlmConfig, build_vlm_tokenizer,
                        make_processor, make_vlm, save_vlm, train_vlm, vision_features)


@dataclass
class BuildConfig:
    seed: int = 0
    n_train: int = 12000  # rendered training images (in memory; CLIP and VLM train on them)
    n_val: int = 500  # validation split written to disk (the shipped split)
    write_train: int = 300  # training images also written to DIR/train (alignment methods need some)
    caption_noise: float = 1.0  # reference captions name absent Y* with prob scale * P_COCO(Y*|x) (captions.py)
    pope_images: int = 200  # POPE images (need >= 3 objects each, as in the official builder)
    threads: int = 1  # on a shared 2-core box one thread beats two (OpenMP spin-waits); use 2 when idle
    clip: ClipConfig = field(default_factory=ClipConfig)
    vlm: VlmConfig = field(default_factory=VlmConfig)


FAST = BuildConfig(
    n_train=256, n_val=24, write_train=8, pope_images=6,
    clip=ClipConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, embed_dim=32,
                    vocab_size=512, steps=6, batch_size=32),
    vlm=VlmConfig(hidden=32, layers=1, intermediate=64, vocab_size=512, steps=6, batch_size=8),
)


def _texts(train, table, rng) -> list[str]:
    """Corpus for the tokenizers: reference captions, sample detailed captions, prompts and answers."""
    from halbench.world.captions import detailed_caption

    caps = [c for per in train.captions[:2000] for c, _ in per]
    n = min(len(train.image_ids), 2000)
    caps += [detailed_caption(train.object_names(i), train.areas(i), table, rng)[0] for i in range(n)]
    prompts = [DETAIL_PROMPT, *SHORT_PROMPTS] + [VQA_PROMPT.format(c) for c in table.categories]
    return caps + prompts * 20 + ["USER: ASSISTANT: Yes", "USER: ASSISTANT: No"] * 50


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _Stages:
    """Prints one line per stage and records its wall-clock and CPU seconds.

    CPU seconds matter on a shared machine: with one thread they approximate the wall time on an idle core.
    """

    def __init__(self, echo):
        self.echo, self.seconds, self.cpu_seconds = echo, {}, {}

    def __call__(self, name: str):
        self._name, self._t, self._c = name, time.perf_counter(), time.process_time()
        self.echo(f"[world] {name} ...")
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.seconds[self._name] = round(time.perf_counter() - self._t, 1)
        self.cpu_seconds[self._name] = round(time.process_time() - self._c, 1)
        if exc[0] is None:
            self.echo(f"[world] {self._name}: {self.seconds[self._name]} s "
                      f"(cpu {self.cpu_seconds[self._name]} s)")


def _data(out: Path, cfg: BuildConfig, table, progress: bool):
    """Render train (in memory) + val (written), and write the first `write_train` training images."""
    train = generate_split("train", cfg.n_train, cfg.seed, noise_scale=cfg.caption_noise, progress=progress)
    val = generate_split("val", cfg.n_val, cfg.seed, noise_scale=cfg.caption_noise, progress=progress)
    write_coco(val, out, table, progress=progress)
    if cfg.write_train:
        k = cfg.write_train
        sub = replace(train, image_ids=train.image_ids[:k], images=train.images[:k], objects=train.objects[:k],
                      captions=train.captions[:k])
        write_coco(sub, out / "train", table, progress=progress)
    return train, val


def _clip(out: Path, cfg: BuildConfig, table, train, val, texts, progress: bool, echo):
    ctok = build_clip_tokenizer(texts, cfg.clip.vocab_size)
    clip = make_clip(ctok, cfg.clip, cfg.seed)
    log = train_clip(clip, ctok, train, table.categories, cfg.clip, cfg.seed, progress=progress)
    save_clip(clip, ctok, out / "clip", cfg.clip.image_size)
    auroc = clip_presence_auroc(clip, ctok, val, table.categories)
    echo(f"[world] clip presence AUROC on val: {auroc:.3f}")
    return clip, log, auroc


def _vlm(out: Path, cfg: BuildConfig, table, clip, train, texts, progress: bool):
    vtok = build_vlm_tokenizer(texts, cfg.vlm.vocab_size)
    vlm = make_vlm(clip, vtok, cfg.vlm, cfg.seed)
    feats = vision_features(vlm, train.images, progress=progress)  # frozen tower: computed once
    builder = SequenceBuilder(vtok, (cfg.clip.image_size // cfg.clip.patch_size) ** 2, table, cfg.vlm)
    log = train_vlm(vlm, builder, train, feats, cfg.vlm, cfg.seed, progress=progress)
    save_vlm(vlm, make_processor(vtok, cfg.clip.image_size, cfg.clip.patch_size), out / "vlm")
    return vlm, log


def build_world(out: str | Path, cfg: BuildConfig = BuildConfig(), progress: bool = True, echo=print) -> Path:
    """Run the whole recipe into `out` (created; existing model dirs are overwritten). Returns `out`."""
    from halbench.tasks.pope import build_pope

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(cfg.threads, os.cpu_count() or 1)))
    table, stage, t0 = default_table(), _Stages(echo), time.perf_counter()
    with stage("render data"):
        train, val = _data(out, cfg, table, progress)
        texts = _texts(train, table, np.random.default_rng(cfg.seed))
    with stage("train clip"):
        clip, clip_log, clip_auroc = _clip(out, cfg, table, train, val, texts, progress, echo)
    with stage("train vlm"):
        vlm, vlm_log = _vlm(out, cfg, table, clip, train, texts, progress)
    with stage("pope files"):  # the official builder needs >= 3 objects per image
        n_pope = min(cfg.pope_images, sum(len(o) >= 3 for o in val.objects))
        build_pope(out / "instances_val.json", out / "pope", n_images=n_pope, n_per_image=3, seed=cfg.seed)
    meta = {
        "recipe": "halbench.world.build", "config": asdict(cfg), "seconds": stage.seconds,
        "cpu_seconds": stage.cpu_seconds, "load_average": list(os.getloadavg()),
        "total_seconds": round(time.perf_counter() - t0, 1), "clip_val_auroc": clip_auroc,
        "clip_log": clip_log[-3:], "vlm_log": vlm_log[-3:],
        "sizes_bytes": {d: _dir_size(out / d) for d in ("clip", "vlm", "images", "train") if (out / d).exists()},
        "params": {"clip": sum(p.numel() for p in clip.parameters()), "vlm": sum(p.numel() for p in vlm.parameters())},
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version()},
    }
    (out / "world.json").write_text(json.dumps(meta, indent=1) + "\n")
    echo(f"[world] built {out} in {meta['total_seconds']} s")
    return out
