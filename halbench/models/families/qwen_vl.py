"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL (M-RoPE families).

Card
- Mirrors: Qwen/Qwen2-VL-7B-Instruct (Qwen2VLForConditionalGeneration), Qwen/Qwen2.5-VL-7B-Instruct
  (Qwen2_5_VLForConditionalGeneration), Qwen/Qwen3-VL-8B-Instruct (Qwen3VLForConditionalGeneration); dynamic
  resolution, 2x2 patch merge, "<|vision_start|><|image_pad|><|vision_end|>" expanded to one <|image_pad|> per
  merged patch, ChatML template.
- Load / save fix: the processors' video part needs torchvision (absent beside the CPU torch), so without it
  the public processor class is built image-only; it keeps its public name, so processor_config.json says
  `Qwen2VLProcessor` / `Qwen2_5_VLProcessor` / `Qwen3VLProcessor` (never a private subclass), exactly as the
  published checkpoints do. Dirs that older halbench versions saved naming `Qwen2VLProcessorNoVideo` still load.
  Plain `AutoProcessor.from_pretrained(dir)` loads a saved dir wherever torchvision is installed (without it,
  transformers itself cannot build any Qwen-VL processor, published checkpoints included).
- Positions: never 1-D; the model computes its 3-D (M-RoPE) positions from input_ids, image_grid_thw,
  mm_token_type_ids and the attention mask.
- BDHS: supported. The image tokens' attention columns are zeroed and the positions generate() would derive
  from the UNMASKED inputs (the model's own `_prepare_position_ids_for_generation`: [4, B, T] text + 3-D) are
  passed explicitly, so masking moves no position (tests: all image tokens masked -> output independent of the
  pixels; keep_frac=1 -> identical to ordinary generation).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing.
- Also served (same M-RoPE handling, NOT in the test matrix): qwen3_vl_moe, glm4v.
"""

from __future__ import annotations

from halbench.models.families.base import Family

_PROCESSORS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor",
               "qwen3_vl_moe": "Qwen3VLProcessor", "glm4v": "Glm4vProcessor"}


class QwenVLFamily(Family):
    __doc__ = __doc__
    name = "qwen_vl"
    model_types = tuple(_PROCESSORS)
    mirrors = ("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")
    mrope = True

    def __init__(self, model_type: str = "qwen2_vl"):
        self.torchvision_processor = _PROCESSORS.get(model_type, "Qwen2VLProcessor")


def family(model_type: str) -> Family:
    return QwenVLFamily(model_type)
