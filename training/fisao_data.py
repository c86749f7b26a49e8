"""FiSAO rollouts on the SAMPLED token ids, and training prompts from a LLaVA-Instruct-style file.

Rollouts: the policy generates from the prompt inputs (`HFModel.build_inputs`, exactly what evaluation
renders) and the training batch is built from the generated ids themselves -- prompt ids + sampled ids up to
and including the first eos -- so the policy log-probs are those of the tokens the policy chose (no decode /
re-encode round trip, which changes the tokenization: 67 tokens from max_new_tokens=48 on a tiny model).

Prompts: llava_instruct_150k.json (Liu et al. 2023, LLaVA; the FiSAO paper trains on its first 8k items):
a JSON array of {"id", "image": "000000033471.jpg", "conversations": [{"from": "human", "value":
"<image>\\nWhat ...?"}, {"from": "gpt", "value": ...}, ...]}. The first human turn (the "<image>" token
and surrounding newlines removed) is the rollout prompt (R: multi-turn items use their first turn only);
images resolve against `images` (COCO train2017 file names in the published file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from halbench.errors import DataError


def load_instruct_prompts(path: str | Path, image_root: str | Path, limit: int | None) -> list[dict[str, Any]]:
    """[{id, image, prompt}] of the first `limit` items of a LLaVA-Instruct-format file (all when None)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read LLaVA-Instruct prompts: {e}", path=path) from e
    if not isinstance(data, list):
        raise DataError("expected a JSON array of {id, image, conversations} (llava_instruct_150k.json format)",
                        path=path)
    out = []
    for n, item in enumerate(data[:limit] if limit else data, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
            raise DataError(f"item {n}: no 'conversations' list", path=path, line=n)
        if not item.get("image"):
            raise DataError(f"item {n}: no 'image' (text-only items cannot be rolled out with an image)",
                            path=path, line=n)
        human = next((t for t in item["conversations"] if isinstance(t, dict) and t.get("from") == "human"), None)
        if human is None or not str(human.get("value", "")).strip():
            raise DataError(f"item {n}: no human turn", path=path, line=n)
        prompt = str(human["value"]).replace("<image>", "").strip()
        image = Path(image_root) / item["image"]
        if not image.is_file():
            raise DataError(f"item {n}: image {item['image']} not found under {image_root}", path=path, line=n)
        out.append({"id": str(item.get("id", n)), "image": str(image), "prompt": prompt, "file": item["image"]})
    if len(out) < 2:
        raise DataError(f"only {len(out)} prompts (need >= 2)", path=path)
    return out


@torch.no_grad()
def rollout(hf: Any, requests: list[Any], max_length: int) -> tuple[list[str], dict[str, Any]]:
    """Sample one response per request from `hf` (its seeding, generation settings) and return the decoded
    texts plus the training batch built from the SAMPLED ids (labels = response ids incl. eos)."""
    from halbench.training.data import flush_left

    inputs = hf.build_inputs(requests, [None] * len(requests))
    inputs.pop("labels")
    had_pos = inputs.pop("position_ids", None) is not None
    g = requests[0].generation
    kw = hf._gen_kwargs(g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hf._chunk_seed(requests))
        out = hf.model.generate(**inputs, **kw)
    width = inputs["input_ids"].shape[1]
    new = out[:, width:]
    eos = kw["eos_token_id"]
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    pad = hf.tokenizer.pad_token_id
    resp_mask = torch.zeros_like(new, dtype=inputs["attention_mask"].dtype)
    texts = []
    for r, ids in enumerate(new.tolist()):
        end = next((k for k, t in enumerate(ids) if t in eos_ids), None)
        n = len(ids) if end is None else end + 1  # the eos the policy chose is one of its actions
        resp_mask[r, :n] = 1
        texts.append(hf.tokenizer.decode(ids[:n if end is None else end], skip_special_tokens=True).strip())
    new = new.masked_fill(resp_mask == 0, pad)
    batch = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    for key in ("token_type_ids", "mm_token_type_ids"):  # per-token extras: responses are text (0)
        if key in batch and batch[key].dim() == 2:
            batch[key] = torch.cat([batch[key], torch.zeros_like(new, dtype=batch[key].dtype)], 1)
    batch["input_ids"] = torch.cat([inputs["input_ids"], new], 1)
    batch["attention_mask"] = torch.cat([inputs["attention_mask"], resp_mask], 1)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, width:] = new.masked_fill(resp_mask == 0, -100)
    batch["labels"] = labels
    if had_pos:
        batch["position_ids"] = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return texts, flush_left(batch, pad, max_length)
