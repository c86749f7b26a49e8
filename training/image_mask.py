"""Masking the language model's attention to image tokens (BDHS), for HF LLaVA-style models.

How: the image tokens' columns of the 2-D attention mask are set to 0 (except a random `keep_frac` of them,
resampled per call), so no text token -- prompt or generated -- can attend to the masked image positions in
any layer. Position ids are computed from the *unmasked* mask and passed explicitly, so every token keeps the
position it has without masking (generate() would otherwise derive positions from the masked mask and shift
the text after the image). The image features are still computed and inserted; they are just not read.

Scope: models whose language model takes 1-D position ids (LLaVA-1.5, LLaVA-NeXT, and other
`<image>`-token-expansion architectures). M-RoPE models (Qwen2-VL family) derive positions from the attention
mask inside forward(), so masking would move them; those raise NotAvailableError.

Checked in tests/test_bdhs.py: with every image token masked the logits and greedy output do not depend on
the pixels; with keep_frac=1 masked generation equals ordinary generation.
"""

from __future__ import annotations

from typing import Any

import torch

from halbench.errors import NotAvailableError


def image_token_id(model: Any) -> int:
    cfg = getattr(model, "config", model)
    tid = getattr(cfg, "image_token_id", None)
    tid = tid if tid is not None else getattr(cfg, "image_token_index", None)
    if tid is None:
        raise NotAvailableError(f"{type(model).__name__} has no image token id: cannot mask image attention")
    return int(tid)


def check_supported(model: Any) -> None:
    from halbench.models.hf import _MROPE_TYPES

    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type in _MROPE_TYPES:
        raise NotAvailableError(f"image-attention masking is not supported for {model_type!r} (M-RoPE positions "
                                "come from the attention mask); use a LLaVA-style model")


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
    is_image = inputs["input_ids"] == image_token_id(model)
    visible = keep_mask(is_image, keep_frac, generator)
    mask = inputs["attention_mask"]
    out = dict(inputs)
    out["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
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
