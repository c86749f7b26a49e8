"""HA-DPO (Zhao et al., 2023; opendatalab/HA-DPO, data at juliozhao/hadpo-data hadpo/llava-v1.5/).

Published files (ha_dpo/data/data_preparation.md): desc_data.json, a JSON object keyed by Visual Genome image
id -> {"chosen": [str, ...], "rejected": [str, ...]}; pope_data.json, a JSON array of {image_id, question,
chosen, reject, answer, correct}. Images: Visual Genome; the authors map image_id -> path through VG's
image_data.json: vg_path/<url dir>/<url file> (VG_100K/ or VG_100K_2/).

Pair rule, as ha_dpo/models/llava-v1_5/train_dpo.py builds it (LazySupervisedDataset, sample_strategy
"offline", random.seed(42)): for each image of desc_data in file order, ONE random chosen and ONE random
rejected description and ONE random question of the four below, prefixed '<image>\\n'; pope entries with
`correct: true` are skipped, the others give (question, chosen, reject); the training list is
pope + desc * 2 (every description pair appears twice). The random draws replay Python's `random` with
seed 42 in the same order, so the same choices are made when desc_data.json is read first.
Images: --image-root is the Visual Genome folder (image_data.json, VG_100K/, VG_100K_2/). Without
image_data.json the path is probed as VG_100K/{id}.jpg then VG_100K_2/{id}.jpg (VG file names are ids).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from halbench.errors import DataError
from halbench.training.pref_data.base import Context, Format, PreferenceRow, Problem, Record, need, text

SEED = 42  # train_dpo.py LazySupervisedDataset(seed=42)
DESC_REPEAT = 2  # list_data_dict = pope_data_dict + desc_data_dict * 2
QUESTIONS = (
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
)


def prepare(ctx: Context, files: list[Path]) -> None:
    """Visual Genome id -> image path (image_data.json under --image-root), and the seeded generator."""
    ctx.state["rng"] = random.Random(SEED)
    root = ctx.image_root
    meta = root / "image_data.json" if root else None
    ctx.state["id2path"] = None
    if meta is not None and meta.is_file():
        from halbench.training.pref_data.readers import load_json

        data = load_json(meta)
        if not isinstance(data, list):
            raise DataError("Visual Genome image_data.json: expected a JSON array of {image_id, url}", path=meta)
        ctx.state["id2path"] = {int(d["image_id"]): _vg_path(root, d["url"])
                                for d in data if isinstance(d, dict) and "url" in d and "image_id" in d}


def _vg_path(root: Path, url: str) -> str:
    """As the authors: vg_path / <url dir> / <url file>, e.g. .../VG_100K_2/1.jpg."""
    parts = url.split("/")
    return str((root / parts[-2] / parts[-1]).absolute())


def image_path(image_id: Any, ctx: Context) -> str | None:
    try:
        key = int(image_id)
    except (TypeError, ValueError):
        return None
    id2path = ctx.state.get("id2path")
    if id2path is not None:
        return id2path.get(key)
    root = ctx.image_root or Path(".")
    for folder in ("VG_100K", "VG_100K_2"):
        if (root / folder / f"{key}.jpg").is_file():
            return str((root / folder / f"{key}.jpg").absolute())
    return str((root / "VG_100K" / f"{key}.jpg").absolute())  # reported missing by validation


def _desc_pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    chosen, rejected = need(rec, "chosen", "ha-dpo"), need(rec, "rejected", "ha-dpo")
    if not chosen or not rejected:
        return [], [Problem(rec.row, f"empty chosen/rejected list for image {rec.data['_key']}", file=rec.file)]
    rng = ctx.state["rng"]
    c, r, q = rng.choice(chosen), rng.choice(rejected), rng.choice(QUESTIONS)  # the authors' draw order
    image = image_path(rec.data["_key"], ctx)
    return [PreferenceRow(prompt=q, chosen=text(c), rejected=text(r), image=image, row=rec.row,
                          id=f"desc:{rec.data['_key']}#{k + 1}", extra={"kind": "desc"})
            for k in range(DESC_REPEAT)], []


def _pope_pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    if need(rec, "correct", "ha-dpo") is True:
        return [], [Problem(rec.row, "already correct (pope entry with correct: true, skipped by HA-DPO)",
                            "already correct", rec.file)]
    image_id, question = need(rec, "image_id", "ha-dpo"), need(rec, "question", "ha-dpo")
    chosen, reject = need(rec, "chosen", "ha-dpo"), need(rec, "reject", "ha-dpo")
    return [PreferenceRow(prompt=text(question).strip(), chosen=text(chosen), rejected=text(reject),
                          image=image_path(image_id, ctx), row=rec.row, id=f"pope:{image_id}:{rec.row}",
                          extra={"kind": "pope", "answer": rec.data.get("answer")})], []


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    if "rng" not in ctx.state:
        prepare(ctx, [])
    return (_desc_pairs if "_key" in rec.data else _pope_pairs)(rec, ctx)


def _is_desc(d: dict[str, Any]) -> bool:
    return "_key" in d and isinstance(d.get("chosen"), list) and isinstance(d.get("rejected"), list)


def _is_pope(d: dict[str, Any]) -> bool:
    return {"image_id", "question", "chosen", "reject", "correct"} <= d.keys()


FORMAT = Format(
    name="ha-dpo", source="opendatalab/HA-DPO (Zhao et al., 2023), llava-v1.5 desc_data.json + pope_data.json",
    detect=lambda d: _is_desc(d) or _is_pope(d),
    pairs=pairs, required=("chosen", "rejected (desc) / reject, question, image_id, correct (pope)"),
    rule="desc: one seeded random chosen x rejected per image, twice; pope: entries with correct: true skipped",
    prepare=prepare)
