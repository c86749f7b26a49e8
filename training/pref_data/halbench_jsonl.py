"""halbench's own preference rows (JSONL or any layout above once converted): {"image": path, "prompt": str,
"chosen": str, "rejected": str} plus optional "id"; aliases "question" for prompt, "image_path" for image,
"response"/"answer" for chosen (BDHS input has no rejected). Other fields are kept in `extra`.
Pair rule: one pair per row (prompt-only rows are valid input for online DPO, prompt + chosen for BDHS). Images: a path (relative ones against --image-root, default the file's folder),
or embedded bytes / a PIL image.
"""

from __future__ import annotations

from typing import Any

from halbench.training.pref_data.base import Context, Format, PreferenceRow, Problem, Record, image_value, text

ALIASES = {"prompt": ("prompt", "question"), "image": ("image", "image_path"),
           "chosen": ("chosen", "response", "answer")}
KNOWN = {"id", "rejected"} | {name for names in ALIASES.values() for name in names}


def pick(raw: dict[str, Any], key: str) -> Any:
    for name in ALIASES.get(key, (key,)):
        if name in raw:
            return raw[name]
    return None


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    raw = rec.data
    return [PreferenceRow(prompt=text(pick(raw, "prompt")), chosen=text(pick(raw, "chosen")),
                          rejected=text(raw.get("rejected")), image=image_value(pick(raw, "image"), ctx.image_root),
                          row=rec.row, id=str(raw.get("id", rec.row)),
                          extra={k: v for k, v in raw.items() if k not in KNOWN})], []


FORMAT = Format(
    name="halbench", source="halbench JSONL (training/data.py)",
    detect=lambda d: any(k in d for k in ALIASES["prompt"]),  # prompt-only rows feed online DPO
    pairs=pairs, required=("prompt", "chosen", "rejected", "image"),
    rule="one pair per row as given")
