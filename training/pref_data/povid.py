"""POVID (Zhou et al., 2024; YiyangAiLab/POVID_preference_data_for_VLLMs,
POVID_preference_data_for_VLLMs_version_1.json).

Published schema (a JSON array; read by YiyangZhou/POVID llava/train/train_dpo.py): id, image (relative to
--image_folder, COCO), conversations [{from: human, value: "<image>\\n..."}, {from: gpt, value: chosen}],
rejected_conversations (the same human turn, then {from: gpt, value: rejected}).
Pair rule: one pair per row: the last gpt turn of `conversations` is chosen, that of
`rejected_conversations` rejected; the prompt is the human turn before it ('<image>' removed).
Images: `image` resolved against --image-root.
"""

from __future__ import annotations

from halbench.training.pref_data.base import (Context, Format, PreferenceRow, Problem, Record, image_value,
                                              last_turn, need, strip_image_token)


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    chosen, before = last_turn(need(rec, "conversations", "povid"), "gpt", rec, "povid", "conversations")
    rejected, _ = last_turn(need(rec, "rejected_conversations", "povid"), "gpt", rec, "povid",
                            "rejected_conversations")
    prompt, history = last_turn(before, "human", rec, "povid", "conversations")
    extra = {"history": history} if history else {}
    return [PreferenceRow(prompt=strip_image_token(prompt), chosen=chosen, rejected=rejected,
                          image=image_value(rec.data.get("image"), ctx.image_root), row=rec.row,
                          id=str(rec.data.get("id", rec.row)), extra=extra)], []


FORMAT = Format(
    name="povid", source="YiyangAiLab/POVID_preference_data_for_VLLMs (POVID, Zhou et al., 2024)",
    detect=lambda d: {"conversations", "rejected_conversations"} <= d.keys(),
    pairs=pairs, required=("conversations", "rejected_conversations", "image"),
    rule="one pair per row: last gpt turn of conversations vs of rejected_conversations")
