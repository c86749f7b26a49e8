"""Gemma 3 (vision-language).

Card
- Mirrors: google/gemma-3-4b-it (Gemma3ForConditionalGeneration: SigLIP tower, average-pooled to
  mm_tokens_per_image=256 soft tokens; Gemma3Processor expands `<start_of_image>` into
  "\\n\\n<start_of_image>" + 256 x `<image_soft_token>` + "<end_of_image>\\n\\n"; chat template
  "<bos><start_of_turn>user\\n<start_of_image>{prompt}<end_of_turn>\\n<start_of_turn>model\\n").
- Batching fix: the processor wants one image list per sample (it counts `<start_of_image>` per sample); a
  flat list made it raise and eval silently re-ran one request at a time. Images go nested, so batches run as
  batches. token_type_ids (image tokens attend bidirectionally to each other) are kept through padding and
  truncation (training/data.py PER_TOKEN_KEYS).
- BDHS: supported; the masked positions are the `<image_soft_token>` positions (boi/eoi markers stay visible:
  they carry no image content).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing.
"""

from __future__ import annotations

from halbench.models.families.base import Family


class Gemma3Family(Family):
    __doc__ = __doc__
    name = "gemma3"
    model_types = ("gemma3",)
    mirrors = ("google/gemma-3-4b-it",)
    nested_images = True


def family(model_type: str) -> Family:
    return Gemma3Family()
