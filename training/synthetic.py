"""Preference data for the embedded world: ground-truth descriptions vs. synthetic object hallucinations.

For a freshly generated world split (images the VLM never saw: split name "dpo", ids from 3,000,001, rendered
by halbench.world.generate with the caller's seed), each image yields one row:

- prompt: the CHAIR task's prompt ("Please describe this image in detail.");
- chosen: a description naming exactly the image's objects, largest first, in the format of the world's
  detailed captions (halbench.world.captions: "The image shows a cup and a fork. There is also a bowl.");
- rejected: the same description with one ABSENT object added at the end of the list: the absent category
  that co-occurs most with a present one in COCO (halbench.world.captions.noise_object, from the COCO
  statistics in halbench.world.cooccurrence). That is the world VLM's own failure mode (its training captions
  carry exactly this noise), so DPO on these pairs targets the language prior that makes it hallucinate.
- extra fields: image_id and objects (the ground truth; rewards for online DPO read them).
- optionally (qa_frac), yes/no rows in the VLM's VQA format "Is there a {obj} in the image?": a present
  object (chosen "Yes", rejected "No") or the absent noise object Y* (chosen "No", rejected "Yes"), with a
  `gt_answer` field.

`world_pairs_file` writes OUT/pairs.jsonl + images + gt_objects.json + meta.json once (rank 0) and reuses
them when the same (n_images, seed, prompt) are asked again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from halbench.errors import HalbenchError
from halbench.training.base import hp

SPLIT_NAME = "dpo"


def default_prompt() -> str:
    try:
        from halbench.tasks.chair import PROMPT

        return PROMPT
    except ImportError:  # the chair task is optional for training
        return "Please describe this image in detail."


def describe(names: list[str], head: str, cut: int | None) -> str:
    """World-style description: `head` filled with names[:cut], then "There is/are also ..." for the rest."""
    from halbench.world.captions import join_list

    first = names if cut is None else names[:cut]
    text = head.format(l=join_list(first))
    text = text[0].upper() + text[1:]
    if cut is None or cut >= len(names):
        return text
    rest = names[cut:]
    verb = "is" if len(rest) == 1 else "are"
    return f"{text} There {verb} also {join_list(rest)}."


def pair_for_image(objects: list[str], areas: list[float], table: Any, rng: np.random.Generator,
                   position: str = "end") -> tuple[str, str, str] | None:
    """(chosen, rejected, hallucinated object) for one image, or None when no absent partner exists.

    The hallucinated object is the world captions' own noise object Y* (halbench.world.captions.noise_object:
    the absent category with the highest COCO conditional frequency given a present one). `position`:
    "end": Y* appended after the present objects, as the world's noisy captions do; "any": inserted at a
    uniformly drawn slot after the first object; "swap": Y* replaces a uniformly drawn present object (same
    length, so the pair carries no "shorter is better" signal); "mixed": "end" or "swap" with probability
    1/2 each; "balanced": "end" or, with probability 1/2, an omission pair (rejected = the description
    without one present object; hallucinated object "") that counters the recall loss of stopping early.
    Sentence structure follows captions.detailed_caption."""
    from halbench.world.captions import DETAIL_TEMPLATES, noise_object, salience_order

    names = salience_order(objects, areas, rng)
    extra, _strength = noise_object(names, table)
    if extra is None:
        return None
    head = DETAIL_TEMPLATES[int(rng.integers(len(DETAIL_TEMPLATES)))]
    mode = position if position not in ("mixed", "balanced") else \
        ("end" if rng.random() < 0.5 else "swap" if position == "mixed" else "omit")
    if mode == "omit" and len(names) >= 2:  # not a hallucination: a pair that rewards naming every object
        k = int(rng.integers(len(names)))
        cut = None if len(names) <= 2 else int(rng.integers(1, len(names)))
        shorter = names[:k] + names[k + 1:]
        short_cut = None if cut is None else cut - (k < cut)
        short_cut = short_cut if short_cut is not None and 0 < short_cut < len(shorter) else None
        return describe(names, head, cut), describe(shorter, head, short_cut), ""
    if mode == "omit":
        mode = "end"
    if mode == "swap":
        k = int(rng.integers(len(names)))
        cut = None if len(names) <= 2 else int(rng.integers(1, len(names)))
        return describe(names, head, cut), describe(names[:k] + [extra] + names[k + 1:], head, cut), extra
    pos = len(names) if mode == "end" or len(names) < 2 else int(rng.integers(1, len(names) + 1))
    with_extra = names[:pos] + [extra] + names[pos:]
    cut = None if len(with_extra) <= 2 else int(rng.integers(1, len(with_extra)))
    # the chosen sentence split: the same objects in the first sentence as in the rejected one
    chosen_cut = None if cut is None else cut - (pos < cut)
    chosen_cut = chosen_cut if chosen_cut is not None and 0 < chosen_cut < len(names) else None
    return describe(names, head, chosen_cut), describe(with_extra, head, cut), extra


def qa_row(objects: list[str], table: Any, rng: np.random.Generator) -> tuple[str, str, str]:
    """A yes/no pair in the world VLM's VQA format: (question, right answer, wrong answer). Half ask about a
    present object, half about the absent noise object Y* (POPE's adversarial negatives are these)."""
    from halbench.world.captions import noise_object

    try:
        from halbench.world.vlm_train import VQA_PROMPT
    except ImportError:  # pragma: no cover - older worlds
        VQA_PROMPT = "Is there a {} in the image?"
    absent, _ = noise_object(objects, table)
    if absent is None or rng.random() < 0.5:
        return VQA_PROMPT.format(objects[int(rng.integers(len(objects)))]), "Yes", "No"
    return VQA_PROMPT.format(absent), "No", "Yes"


def build_world_pairs(out_dir: Path, n_images: int, seed: int, prompt: str, position: str = "end",
                      qa_frac: float = 0.0) -> Path:
    """Generate the split, write images + pairs.jsonl + gt_objects.json; returns the pairs path.
    With qa_frac > 0, that fraction of images also gets a yes/no row (qa_row)."""
    from halbench.world.cooccurrence import default_table
    from halbench.world.generate import generate_split, write_coco

    table = default_table()
    split = generate_split(SPLIT_NAME, n_images, seed=seed, table=table, progress=False)
    write_coco(split, out_dir, table=table, progress=False)
    rng = np.random.default_rng([seed, 7])
    rows = []
    for i, image_id in enumerate(split.image_ids):
        objects, image = split.object_names(i), f"images/{split.file_name(i)}"
        common = {"image": image, "image_id": image_id, "objects": sorted(objects)}
        pair = pair_for_image(objects, split.areas(i), table, rng, position)
        if pair is not None:
            chosen, rejected, extra = pair
            rows.append({"id": f"world-{image_id}", "prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "inserted_object": extra, **common})
        if qa_frac and rng.random() < qa_frac:
            question, right, wrong = qa_row(objects, table, rng)
            rows.append({"id": f"world-{image_id}-qa", "prompt": question, "chosen": right, "rejected": wrong,
                         "gt_answer": right, **common})
    path = out_dir / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def world_pairs_file(out_dir: str | Path, n_images: int, seed: int, prompt: str | None = None,
                     accelerator: Any = None, position: str = "end", qa_frac: float = 0.0) -> Path:
    """OUT/pairs.jsonl for the given settings, generated once (main process) and reused afterwards."""
    out = Path(out_dir)
    meta = {"n_images": n_images, "seed": seed, "prompt": prompt or default_prompt(), "split": SPLIT_NAME,
            "position": position, "qa_frac": qa_frac, "version": 3}
    meta_path, pairs = out / "meta.json", out / "pairs.jsonl"
    main = accelerator is None or accelerator.is_main_process
    fresh = meta_path.is_file() and pairs.is_file() and json.loads(meta_path.read_text()) == meta
    if main and not fresh:
        out.mkdir(parents=True, exist_ok=True)
        build_world_pairs(out, n_images, seed, meta["prompt"], position, qa_frac)
        meta_path.write_text(json.dumps(meta))
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return pairs


@dataclass
class WorldDataSettings:
    """Config fields of the embedded-world data a method trains on when `data` is not given."""

    world_images: int = hp(600, "With no `data`: images in the generated world training split.")
    world_prompt: str | None = hp(None, "With no `data`: the description prompt (default: the CHAIR task's).")
    world_insert: str = hp("end", "With no `data`: how a rejected description names the absent object: 'end' "
                           "(appended, as the world's noisy captions), 'any' (inserted), 'swap' (replaces a "
                           "present object), 'mixed' (end or swap).")
    world_qa: float = hp(0.0, "With no `data`: fraction of images that also give a yes/no pair (\"Is there a X "
                         "in the image?\", X present or the absent noise object).")

    def check_world(self) -> None:
        if self.world_insert not in ("end", "any", "swap", "mixed", "balanced"):
            raise HalbenchError(f"world_insert must be end, any, swap, mixed or balanced, got {self.world_insert!r}")
        if not 0.0 <= self.world_qa <= 1.0 or self.world_images < 1:
            raise HalbenchError("world_qa must be in [0, 1] and world_images >= 1")


def world_source(session: Any, cfg: Any) -> Path:
    """cfg.data, or the world pairs file for cfg's world settings (generated under OUTPUT/train)."""
    if cfg.data is not None:
        return Path(cfg.data)
    return world_pairs_file(session.train_dir / "world_pairs", n_images=cfg.world_images, seed=cfg.seed,
                            prompt=cfg.world_prompt, accelerator=session.accelerator, position=cfg.world_insert,
                            qa_frac=cfg.world_qa)
