"""LLaVA-RLHF human preferences (Sun et al., 2023; zhiqings/LLaVA-Human-Preference-10K,
llava_7b_v1_preference.json).

Published schema (a JSON array; read by llava-rlhf/LLaVA-RLHF RLHF/data_utils/data_utils_rm.py): id, image
(a COCO train2017 file name; the reward-model script passes --image_folder .../coco/train2017),
conversations [{from: human|gpt, value}] whose last turn is the gpt turn being compared, output_1 / output_2
({from: gpt, value}), preference (1 or 2: which output the annotator preferred).
Pair rule: the authors trained a reward model on these comparisons (choice = preference - 1); for DPO the
preferred output becomes chosen and the other rejected, one pair per row.
Prompt: the last human turn before the compared gpt turn, '<image>' removed (halbench places the image).
Earlier turns are kept in `extra["history"]` and counted as multi-turn in the load info: halbench's
Request carries one prompt, so training sees only the last question (stated, not hidden).
Images: `image` resolved against --image-root (point it at COCO train2017).
"""

from __future__ import annotations

from halbench.training.pref_data.base import (Context, Format, PreferenceRow, Problem, Record, image_value,
                                              last_turn, need, strip_image_token, text)


def _output(value: object) -> str:
    return text(value.get("value")) if isinstance(value, dict) else text(value)


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    turns = need(rec, "conversations", "llava-rlhf")
    if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], list):
        turns = turns[0]  # some rows wrap the conversation in a list (the authors' "HACK" in _get_text)
    pref = str(need(rec, "preference", "llava-rlhf")).strip()
    if pref not in ("1", "2"):
        return [], [Problem(rec.row, f"malformed: preference must be 1 or 2, got {pref!r}", file=rec.file)]
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and turns[-1].get("from") == "gpt":
        turns = turns[:-1]  # the compared turn; its value is replaced by output_1 / output_2
    prompt, history = last_turn(turns, "human", rec, "llava-rlhf", "conversations")
    out1, out2 = _output(need(rec, "output_1", "llava-rlhf")), _output(need(rec, "output_2", "llava-rlhf"))
    chosen, rejected = (out1, out2) if pref == "1" else (out2, out1)
    extra = {"history": history} if history else {}
    image = rec.data.get("image")
    return [PreferenceRow(prompt=strip_image_token(prompt), chosen=chosen, rejected=rejected,
                          image=image_value(image, ctx.image_root), row=rec.row,
                          id=str(rec.data.get("id", rec.row)), extra=extra)], []


FORMAT = Format(
    name="llava-rlhf", source="zhiqings/LLaVA-Human-Preference-10K (LLaVA-RLHF, Sun et al., 2023)",
    detect=lambda d: {"output_1", "output_2", "preference"} <= d.keys(),
    pairs=pairs, required=("conversations", "output_1", "output_2", "preference", "image"),
    rule="one pair per row: the preferred output (preference 1|2) is chosen")
