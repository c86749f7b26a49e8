"""VLFeedback / Silkie (Li et al., 2023, arXiv:2312.10665; MMInstruction/VLFeedback).

Published schema (dataset card): id, prompt, models [str], completions: a sequence of {annotations:
{Helpfulness, Ethical Considerations, Visual Faithfulness: {Rating: str, Rationale: str}}, model, response};
the loading script adds img_path, the parquet export an embedded image. Raw file: vlfeedback_80k.jsonl with
images in merged_images.zip -> merged_images/{id}.jpg.

Pair rule, as Silkie built it (vlf-silkie/VLFeedback run_dpo.py, make_batch_pairs): for EVERY pair of a
prompt's completions (itertools.combinations), the score is the mean of float(Rating) over the annotation's
aspects; a rating that float() rejects skips the pair; equal means (ties) are skipped; otherwise the higher
mean is chosen. So 4 completions give up to 6 pairs, not only best vs worst.
Deviation (documented): an aspect whose value is null (parquet fills absent struct fields with null) is left
out of the mean, as it is absent from the raw JSONL; Silkie's code would crash on it.
Images: embedded `image` bytes; else `img_path`; else merged_images/{id}.jpg under --image-root (or {id}.jpg
when --image-root is the merged_images folder itself).
Parity: rule re-implemented from run_dpo.py; tested on a 4-completion prompt with known ratings.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from halbench.training.pref_data.base import (Context, Format, PreferenceRow, Problem, Record, image_value, need,
                                              strip_image_token, text)


def completions(rec: Record) -> list[dict[str, Any]]:
    """The completion list; HF `sequence` features arrive column-wise ({annotations: [...], response: [...]})."""
    comps = need(rec, "completions", "vlfeedback")
    if isinstance(comps, dict):
        keys = list(comps)
        n = len(comps[keys[0]]) if keys else 0
        return [{k: comps[k][i] for k in keys} for i in range(n)]
    return list(comps or [])


def mean_rating(annotations: Any) -> float | None:
    """Mean of float(Rating) over the aspects; None when a rating is not a number (Silkie skips the pair)."""
    if not isinstance(annotations, dict):
        return None
    try:
        scores = [float(a["Rating"]) for a in annotations.values() if a is not None]
    except (ValueError, TypeError, KeyError):
        return None
    return sum(scores) / len(scores) if scores else None


def _image(rec: Record, ctx: Context) -> Any:
    image = rec.data.get("image")
    if image is not None and image != "":
        return image_value(image, ctx.image_root)
    if rec.data.get("img_path"):
        return image_value(rec.data["img_path"], ctx.image_root)
    root = ctx.image_root or Path(".")
    folder = root / "merged_images" if (root / "merged_images").is_dir() else root
    return str((folder / f"{rec.data.get('id')}.jpg").absolute())


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    prompt = strip_image_token(text(need(rec, "prompt", "vlfeedback")))
    comps, image, rid = completions(rec), _image(rec, ctx), str(rec.data.get("id", rec.row))
    rows, dropped = [], []
    for i, j in combinations(range(len(comps)), 2):
        a, b = comps[i], comps[j]
        sa, sb = mean_rating(a.get("annotations")), mean_rating(b.get("annotations"))
        names = f"{a.get('model', i)} vs {b.get('model', j)}"
        if sa is None or sb is None:
            dropped.append(Problem(rec.row, f"non-numeric rating ({names})", "non-numeric rating", rec.file))
            continue
        if sa == sb:
            dropped.append(Problem(rec.row, f"tie ({names}: {sa:g})", "tie", rec.file))
            continue
        win, lose = (a, b) if sa > sb else (b, a)
        rows.append(PreferenceRow(
            prompt=prompt, chosen=text(win.get("response")), rejected=text(lose.get("response")), image=image,
            row=rec.row, id=f"{rid}:{win.get('model')}>{lose.get('model')}",
            extra={"score_chosen": max(sa, sb), "score_rejected": min(sa, sb),
                   "model_chosen": win.get("model"), "model_rejected": lose.get("model")}))
    return rows, dropped


FORMAT = Format(
    name="vlfeedback", source="MMInstruction/VLFeedback (Silkie, Li et al., 2023)",
    detect=lambda d: {"prompt", "completions"} <= d.keys(),
    pairs=pairs, required=("id", "prompt", "completions"),
    rule="every non-tied pair of a prompt's completions by mean aspect rating (Silkie); ties and non-numeric "
         "ratings skipped")
