"""LLaVA-OneVision.

Card
- Mirrors: llava-hf/llava-onevision-qwen2-7b-ov-hf (LlavaOnevisionForConditionalGeneration, SigLIP tower, Qwen2
  LM, LlavaOnevisionProcessor with `num_image_tokens`, `vision_aspect_ratio="anyres_max_9"`, the Qwen2 ChatML
  template "<|im_start|>user <image>\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n").
- Load fix: its processor's video part (LlavaOnevisionVideoProcessor) needs torchvision, which does not install
  beside the CPU torch; without torchvision the public LlavaOnevisionProcessor is built without it (images only;
  video requests are not a halbench feature), and what halbench saves names LlavaOnevisionProcessor.
- Works: eval, batch N == batch 1, DPO + reload, BDHS (`<image>` positions, which include the image-newline
  features), FiSAO. Refused: nothing.
"""

from __future__ import annotations

from halbench.models.families.base import Family


class LlavaOnevisionFamily(Family):
    __doc__ = __doc__
    name = "llava_onevision"
    model_types = ("llava_onevision",)
    mirrors = ("llava-hf/llava-onevision-qwen2-7b-ov-hf",)
    torchvision_processor = "LlavaOnevisionProcessor"


def family(model_type: str) -> Family:
    return LlavaOnevisionFamily()
