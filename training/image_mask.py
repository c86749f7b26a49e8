"""Masking the language model's attention to image tokens (BDHS), for every HF VLM family.

How: the columns of the 2-D attention mask at the LM positions that hold image features (the family
adapter's `image_token_mask`: the expanded `<image>` / <|image_pad|> / [IMG] / <IMG_CONTEXT> / query tokens)
are set to 0, except a random `keep_frac` of them, resampled per call, so no text token -- prompt or
generated -- can attend to the masked image positions in any layer. The positions generate() would derive from
the *unmasked* inputs (the model's own `_prepare_position_ids_for_generation`: 1-D mask cumsum for LLaVA-style
models, [4, B, T] text + 3-D M-RoPE positions for the Qwen-VL families) are passed explicitly, so every token
keeps the position it has without masking (generate() would otherwise derive positions from the masked mask
and shift the text after the image). The image features are still computed and inserted; they are just not
read.

Scope: every family in halbench/models/families (InstructBLIP: the Q-Former query tokens placed in the LM
input). A model whose config names no image token is refused up front (`check_supported`), never masked
silently wrong.

Checked in tests/test_bdhs.py and tests/test_families.py: with every image token masked the logits and greedy
output do not depend on the pixels; with keep_frac=1 masked generation equals ordinary generation.
"""

from __future__ import annotations

from typing import Any

import torch

from halbench.errors import NotAvailableError


def _family(model: Any):
    from halbench.models.families import family_for

    return family_for(getattr(getattr(model, "config", None), "model_type", "") or "")


def image_token_id(model: Any) -> int:
    cfg = getattr(model, "config", model)
    tid = getattr(cfg, "image_token_id", None)
    tid = tid if tid is not None else getattr(cfg, "image_token_index", None)
    if tid is None:
        raise NotAvailableError(f"{type(model).__name__} has no image token id: cannot mask image attention")
    return int(tid)


def check_supported(model: Any) -> None:
    """Refuse (NotAvailableError, one line) a model whose image positions cannot be masked."""
    reason = _family(model).bdhs_refusal(model)
    if reason:
        raise NotAvailableError(f"BDHS image-attention masking is not available: {reason}")


def image_positions(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """Bool [B, T]: the LM positions of `inputs` that hold image features."""
    return _family(model).image_token_mask(model, inputs)


def keep_mask(is_image: torch.Tensor, keep_frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool [B, T]: the image tokens left visible, round(keep_frac * n) per row (at least one when
    keep_frac > 0), drawn uniformly without replacement."""
    keep = torch.zeros_like(is_image)
    for r in range(is_image.shape[0]):
        pos = is_image[r].nonzero().flatten()
        if not len(pos) or keep_frac <= 0:
            continue
        n = min(len(pos), max(1, round(keep_frac * len(pos))))
        pick = torch.randperm(len(pos), generator=generator)[:n]
        keep[r, pos[pick]] = True
    return keep


def masked_inputs(inputs: dict[str, Any], model: Any, keep_frac: float,
                  generator: torch.Generator | None = None) -> dict[str, Any]:
    """Copy of `inputs` whose attention mask hides the image tokens (but keep_frac of them) and whose
    position ids are those of the unmasked sequence."""
    check_supported(model)
    family = _family(model)
    is_image = family.image_token_mask(model, inputs)
    visible = keep_mask(is_image, keep_frac, generator)
    mask = inputs["attention_mask"]
    out = dict(inputs)
    out["position_ids"] = family.generation_position_ids(model, inputs)
    out["attention_mask"] = mask.masked_fill(is_image & ~visible, 0)
    return out


@torch.no_grad()
def generate_masked(model: Any, inputs: dict[str, Any], keep_frac: float, generator: torch.Generator | None = None,
                    **generate_kwargs: Any) -> torch.Tensor:
    """model.generate() with image attention masked; returns the new token ids [B, N] (left-padded inputs)."""
    kw = {k: v for k, v in masked_inputs(inputs, model, keep_frac, generator).items() if k != "labels"}
    out = model.generate(**kw, **generate_kwargs)
    return out[:, inputs["input_ids"].shape[1]:]


def _first_sentence(text: str) -> str:
    """Text up to and including its first sentence end (. ! ? followed by space or end), else all of it."""
    import re

    m = re.search(r"[.!?](\s|$)", text)
    return text[:m.end()].rstrip() if m else text


def generate_masked_texts(hf: Any, requests: list[Any], prefixes: list[str | None], *, keep_frac: float,
                          seed: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                          one_sentence: bool = False) -> list[str]:
    """Sample continuations of `prompt (+ prefix)` for each request with image attention masked.

    `hf` is a halbench.models.hf.HFModel (its build_inputs renders prompts exactly as evaluation does).
    Returns the generated text only (decoded up to eos; with one_sentence, up to the first sentence end).
    Seeded: the visible image tokens and the sampling depend only on `seed` (the caller's RNG is untouched).
    """
    inputs = hf.build_inputs(requests, prefixes)
    inputs.pop("labels", None)
    gen = torch.Generator().manual_seed(seed)
    eos = hf.model.generation_config.eos_token_id
    eos = eos if eos is not None else hf.tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    kw = dict(max_new_tokens=max_new_tokens, pad_token_id=hf.tokenizer.pad_token_id, eos_token_id=eos)
    kw.update(dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0
              else dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = generate_masked(hf.model, inputs, keep_frac, gen, **kw).tolist()
    texts = []
    for ids in new:
        end = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
        text = hf.tokenizer.decode(ids[:end], skip_special_tokens=True)
        texts.append(_first_sentence(text) if one_sentence else text)
    return texts
