"""TRL's conversational preference layout (huggingface/trl DPOTrainer docs; e.g. HuggingFaceH4/rlaif-v_formatted,
trl-lib/rlaif-v).

Published schema (dataset card features): images (a sequence of images), prompt, chosen, rejected: lists of
messages {role, content: [{type: "image"|"text", text}]} (content may also be a plain string).
Pair rule: one pair per row; prompt = the text of the last user message (earlier messages kept in
`extra["history"]`), chosen / rejected = the text of the assistant messages.
Images: images[0] (bytes or path, against --image-root); a row with more than one image is refused with a
reason (halbench rows carry one image).
"""

from __future__ import annotations

from typing import Any

from halbench.training.pref_data.base import (Context, Format, PreferenceRow, Problem, Record, image_value, need,
                                              text)


def message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, list):
        return " ".join(text(c.get("text")) for c in content if isinstance(c, dict) and c.get("type") == "text"
                        and c.get("text")).strip()
    return text(content).strip()


def _role_text(messages: Any, role: str) -> str:
    if not isinstance(messages, list):
        return text(messages)
    return "\n".join(message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == role)


def pairs(rec: Record, ctx: Context) -> tuple[list[PreferenceRow], list[Problem]]:
    prompt_msgs = need(rec, "prompt", "trl")
    chosen, rejected = need(rec, "chosen", "trl"), need(rec, "rejected", "trl")
    users = [i for i, m in enumerate(prompt_msgs) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return [], [Problem(rec.row, "empty prompt: no user message", file=rec.file)]
    images = rec.data.get("images") or ([rec.data["image"]] if rec.data.get("image") is not None else [])
    if len(images) > 1:
        return [], [Problem(rec.row, f"other: {len(images)} images in one row (halbench rows take one)",
                            file=rec.file)]
    extra = {"history": prompt_msgs[:users[-1]]} if users[-1] > 0 else {}
    return [PreferenceRow(prompt=message_text(prompt_msgs[users[-1]]), chosen=_role_text(chosen, "assistant"),
                          rejected=_role_text(rejected, "assistant"),
                          image=image_value(images[0], ctx.image_root) if images else None, row=rec.row,
                          id=str(rec.data.get("id", rec.row)), extra=extra)], []


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


FORMAT = Format(
    name="trl", source="TRL conversational preference layout (e.g. HuggingFaceH4/rlaif-v_formatted)",
    detect=lambda d: {"prompt", "chosen", "rejected"} <= d.keys() and _is_messages(d["prompt"]),
    pairs=pairs, required=("prompt", "chosen", "rejected", "images"),
    rule="one pair per row: assistant text of chosen vs rejected")
