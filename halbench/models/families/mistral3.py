"""Mistral3 / Pixtral.

Card
- Mirrors: mistralai/Mistral-Small-3.1-24B-Instruct-2503 (Mistral3ForConditionalGeneration: Pixtral vision
  tower with 2-D RoPE, patch merger (spatial_merge_size 2), Mistral LM; PixtralProcessor expands `[IMG]` into
  rows of `[IMG]` tokens separated by `[IMG_BREAK]` and closed by `[IMG_END]`; template
  "<s>[INST][IMG]{prompt}[/INST]"). Native resolution: `image_sizes` travels with pixel_values.
- BDHS: supported; masked positions are the `[IMG]` tokens. `[IMG_BREAK]` / `[IMG_END]` stay visible: they
  hold no image features, but their count reveals the image's aspect ratio (noted, not hidden).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing.
"""

from __future__ import annotations

from halbench.models.families.base import Family


class Mistral3Family(Family):
    __doc__ = __doc__
    name = "mistral3"
    model_types = ("mistral3",)
    mirrors = ("mistralai/Mistral-Small-3.1-24B-Instruct-2503",)


def family(model_type: str) -> Family:
    return Mistral3Family()
