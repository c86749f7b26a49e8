"""LLaVA-1.5 and LLaVA-NeXT (vicuna and mistral).

Card
- Mirrors: llava-hf/llava-1.5-7b-hf (LlavaForConditionalGeneration + LlavaProcessor, CLIP ViT-L/14-336,
  `num_additional_image_tokens=1`, "USER: <image>\\n{prompt} ASSISTANT:"), llava-hf/llava-v1.6-vicuna-7b-hf and
  llava-hf/llava-v1.6-mistral-7b-hf (LlavaNextForConditionalGeneration, anyres tiling, "[INST] <image>\\n{prompt}
  [/INST]" for mistral).
- Works: eval, batch N == batch 1, DPO / online DPO + reload, BDHS (the `<image>` tokens' attention columns
  masked, 1-D positions of the unmasked sequence), FiSAO.
- Refused: nothing. The default adapter's behaviour is exactly right for these: every image feature sits at an
  `<image>` token the processor expanded, and the LM takes 1-D positions.
"""

from __future__ import annotations

from halbench.models.families.base import Family


class LlavaFamily(Family):
    __doc__ = __doc__
    name = "llava"
    model_types = ("llava", "llava_next")
    mirrors = ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf")


def family(model_type: str) -> Family:
    return LlavaFamily()
