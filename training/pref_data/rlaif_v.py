"""RLAIF-V (Yu et al., 2024; openbmb/RLAIF-V-Dataset, CC BY-NC 4.0) and RLHF-V (Yu et al., 2023;
openbmb/RLHF-V-Dataset, CC BY-NC 4.0).

Published schema (dataset cards, `dataset_info.features`):
- RLAIF-V: ds_name, image {bytes, path}, question, chosen, rejected, origin_dataset, origin_split, idx,
  image_path (parquet shards RLAIF-V-Dataset_000.parquet ...).
- RLHF-V: ds_name, image {bytes, path}, text (a JSON string {"question", "chosen", "rejected"}),
  origin_dataset, origin_split, idx, image_path (RLHF-V-Dataset.parquet).
Pair rule: one pair per row, chosen/rejected as given (the RLAIF-V code trains on rows as they are).
Images: the embedded bytes; without bytes, `image_path` resolved against --image-root.
Parity: schema checked against the dataset cards; tested on rows written in that schema.
"""

from __future__ import annotations

import json
from typing import Any

from halbench.training.pref_data.base import (Context, Format, PreferenceRow, Problem, Record, image_value, need,
                                              strip_image_token, text)

META = ("ds_name", "origin_dataset", "origin_split", "idx")


def _image(rec: Record, ctx: Context) -> Any:
    image = rec.data.get("image")
    if isinstance(image, dict) and image.get("bytes") or (image is not None and not isinstance(image, (str, dict))):
        return image_value(image, ctx.image_root)
    return image_value(rec.data.get("image_path") or image, ctx.image_root)


def _row(rec: Record, ctx: Context, prompt: str, chosen: Any, rejected: Any) -> PreferenceRow:
    extra = {k: rec.data[k] for k in ("ds_name", "origin_dataset", "origin_split") if k in rec.data}
    return PreferenceRow(prompt=strip_image_token(text(prompt)), chosen=text(chosen), rejected=text(rejected),
                         image=_image(rec, ctx), row=rec.row, id=str(rec.data.get("idx", rec.row)), extra=extra)


def rlaif_pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    q, c, r = (need(rec, k, "rlaif-v") for k in ("question", "chosen", "rejected"))
    return [_row(rec, ctx, q, c, r)], []


def rlhf_pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    raw = need(rec, "text", "rlhf-v")
    try:
        item = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        return [], [Problem(rec.row, f"malformed JSON in field 'text' ({e.msg})", file=rec.file)]
    if not isinstance(item, dict):
        return [], [Problem(rec.row, "malformed: field 'text' is not a JSON object", file=rec.file)]
    missing = [k for k in ("question", "chosen", "rejected") if k not in item]
    if missing:
        return [], [Problem(rec.row, f"missing field {missing[0]!r} in 'text'", file=rec.file)]
    return [_row(rec, ctx, item["question"], item["chosen"], item["rejected"])], []


def _has_meta(d: dict[str, Any]) -> bool:
    return any(k in d for k in META)


RLAIF_V = Format(
    name="rlaif-v", source="openbmb/RLAIF-V-Dataset (Yu et al., 2024)",
    detect=lambda d: {"question", "chosen", "rejected"} <= d.keys() and _has_meta(d),
    pairs=rlaif_pairs, required=("question", "chosen", "rejected", "image"),
    rule="one pair per row: chosen vs rejected as published")

RLHF_V = Format(
    name="rlhf-v", source="openbmb/RLHF-V-Dataset (Yu et al., 2023)",
    detect=lambda d: "text" in d and _has_meta(d) and "chosen" not in d,
    pairs=rlhf_pairs, required=("text", "image"),
    rule="one pair per row: the `text` JSON's chosen vs rejected")
