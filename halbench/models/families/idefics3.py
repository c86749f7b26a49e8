"""Idefics3 and SmolVLM.

Card
- Mirrors: HuggingFaceM4/Idefics3-8B-Llama3 and HuggingFaceTB/SmolVLM-Instruct (both
  Idefics3ForConditionalGeneration + Idefics3Processor), and HuggingFaceTB/SmolVLM-256M-Instruct
  (SmolVLMForConditionalGeneration + SmolVLMProcessor): a SigLIP-style tower, pixel-shuffle connector (scale_factor), images split into tiles plus a global image, each written as
  `<fake_token_around_image><row_i_col_j>` + `<image>` x image_seq_len; chat template
  "<|begin_of_text|>User:<image>{prompt}<end_of_utterance>\\nAssistant:".
- Images go nested (one list per sample: the processors count `<image>` per sample).
- SmolVLM's processor has a video part that needs torchvision: without torchvision the public SmolVLMProcessor
  is built image-only (and saved under its public name). Its prompt builder needs the `num2words` package.
- BDHS: supported; masked positions are the `<image>` tokens (row/column tags and fake-image markers carry no
  image content and stay visible).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing.
"""

from __future__ import annotations

from halbench.models.families.base import Family


class Idefics3Family(Family):
    __doc__ = __doc__
    name = "idefics3"
    model_types = ("idefics3", "smolvlm")
    mirrors = ("HuggingFaceM4/Idefics3-8B-Llama3", "HuggingFaceTB/SmolVLM-Instruct",
               "HuggingFaceTB/SmolVLM-256M-Instruct")
    nested_images = True

    def __init__(self, model_type: str = "idefics3"):
        self.torchvision_processor = "SmolVLMProcessor" if model_type == "smolvlm" else None


def family(model_type: str) -> Family:
    return Idefics3Family(model_type)
