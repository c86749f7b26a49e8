"""InternVL (the transformers-native `internvl` model type).

Card
- Mirrors: OpenGVLab/InternVL3-1B-hf (InternVLForConditionalGeneration: InternViT tower, pixel-shuffle
  (downsample_ratio 0.5) MLP projector, Qwen2 LM; InternVLProcessor = GotOcr2ImageProcessor tiles + Qwen2
  tokenizer, `<IMG_CONTEXT>` in the prompt expanded to `<img>` + `<IMG_CONTEXT>` x image_seq_length per tile +
  `</img>`; ChatML template).
- Its processor has a video part that needs torchvision: without torchvision the public InternVLProcessor is
  built image-only and saved under its public name.
- BDHS: supported; masked positions are the `<IMG_CONTEXT>` tokens (`<img>` / `</img>` stay visible).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing. (The original remote-code
  OpenGVLab/InternVL* checkpoints are not this model type; load them with trust_remote_code at your own risk.)
"""

from __future__ import annotations

from halbench.models.families.base import Family


class InternVLFamily(Family):
    __doc__ = __doc__
    name = "internvl"
    model_types = ("internvl",)
    mirrors = ("OpenGVLab/InternVL3-1B-hf",)
    torchvision_processor = "InternVLProcessor"


def family(model_type: str) -> Family:
    return InternVLFamily()
