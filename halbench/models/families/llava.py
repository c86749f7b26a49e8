"""LLaVA-1.5 and LLaVA-NeXT (vicuna and mistral).

Card
- Mirrors: llava-hf/llava-1.5-7b-hf (LlavaForConditionalGeneration + LlavaProcessor, CLIP ViT-L/14-336,
  `num_additional_image_tokens=1`, "USER: <image>\\n{prompt} ASSISTANT:"), llava-hf/llava-v1.6-vicuna-7b-hf and
  llava-hf/llava-v1.6-mistral-7b-hf (LlavaNextForConditionalGeneration, anyres tiling, "[INST] <image>\\n{prompt}
  [/INST]" for mistral).
- Works: eval, batch N == batch 1, DPO / online DPO + reload, BDHS (the `<image>` tokens' attention columns
  masked, 1-D positions of the unmasked sequence), FiSAO.
- Pixtral (mistral-community/pixtral-12b) is also model_type `llava` (LlavaForConditionalGeneration with a
  Pixtral tower) with a PixtralProcessor; without torchvision that processor is replaced by the Mistral3
  adapter's PixtralImagePrompts (same `[IMG]` / `[IMG_BREAK]` / `[IMG_END]` expansion; saved as PixtralProcessor).
- Refused: nothing. The default adapter's behaviour is exactly right for these: every image feature sits at an
  `<image>` (or `[IMG]`) token the processor expanded, and the LM takes 1-D positions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halbench.models.families.base import Family, torchvision_available


class LlavaFamily(Family):
    __doc__ = __doc__
    name = "llava"
    model_types = ("llava", "llava_next")
    mirrors = ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf",
               "mistral-community/pixtral-12b")

    def load_processor(self, path: Path, trust_remote_code: bool = False):
        if _processor_class(path) == "PixtralProcessor" and not torchvision_available():
            from halbench.models.families.mistral3 import Mistral3Family

            return Mistral3Family().load_processor(path, trust_remote_code)
        return super().load_processor(path, trust_remote_code)

    def save_processor(self, processor: Any, out: Path) -> None:
        if type(processor).__name__ == "PixtralImagePrompts":
            processor.save_pretrained(out)  # names PixtralProcessor
            return
        super().save_processor(processor, out)


def _processor_class(path: Path) -> str | None:
    f = Path(path) / "processor_config.json"
    try:
        return json.loads(f.read_text()).get("processor_class") if f.is_file() else None
    except json.JSONDecodeError:
        return None


def family(model_type: str) -> Family:
    return LlavaFamily()
