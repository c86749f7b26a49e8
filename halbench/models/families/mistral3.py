"""Mistral3 / Pixtral.

Card
- Mirrors: mistralai/Mistral-Small-3.1-24B-Instruct-2503 (Mistral3ForConditionalGeneration: Pixtral vision
  tower with 2-D RoPE, patch merger (spatial_merge_size 2), Mistral LM; PixtralProcessor expands `[IMG]` into
  rows of `[IMG]` tokens separated by `[IMG_BREAK]` and closed by `[IMG_END]`; template
  "<s>[INST][IMG]{prompt}[/INST]"). Native resolution: `image_sizes` travels with pixel_values.
- Load fix: transformers' PixtralProcessor module imports the torchvision image processor, so without
  torchvision it cannot even be imported. `PixtralImagePrompts` below does the processor's image path with the
  PIL image processor (PixtralImageProcessorPil, patch_size = patch_size x spatial_merge_size) and the same
  `[IMG]` expansion (PixtralProcessor.replace_image_token, transformers 5.24); it saves the dir exactly as a
  PixtralProcessor does (processor_config.json naming PixtralProcessor), so plain transformers with
  torchvision loads what halbench saves. Tested: ids equal to the expansion rule on images of two aspect ratios.
- BDHS: supported; masked positions are the `[IMG]` tokens. `[IMG_BREAK]` / `[IMG_END]` stay visible: they
  hold no image features, but their count reveals the image's aspect ratio (noted, not hidden).
- Works: eval, batch N == batch 1, DPO + reload, BDHS, FiSAO. Refused: nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halbench.errors import ModelLoadError
from halbench.models.families.base import Family, read_chat_template


class PixtralImagePrompts:
    """PixtralProcessor's image path without torchvision (see the module card)."""

    _halbench_image_only = True

    def __init__(self, image_processor, tokenizer, patch_size: int = 16, spatial_merge_size: int = 1,
                 chat_template: str | None = None, image_token: str = "[IMG]", image_break_token: str = "[IMG_BREAK]",
                 image_end_token: str = "[IMG_END]"):
        self.image_processor, self.tokenizer, self.chat_template = image_processor, tokenizer, chat_template
        self.patch_size, self.spatial_merge_size = int(patch_size), int(spatial_merge_size)
        self.image_token, self.image_break_token, self.image_end_token = image_token, image_break_token, image_end_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    def expansion(self, height: int, width: int) -> str:
        step = self.patch_size * self.spatial_merge_size
        rows = [[self.image_token] * (width // step) + [self.image_break_token]] * (height // step)
        tokens = [t for row in rows for t in row]
        tokens[-1] = self.image_end_token
        return "".join(tokens)

    def __call__(self, text: list[str], images: list | None = None, return_tensors: str = "pt", padding: bool = True,
                 add_special_tokens: bool = True, **kwargs: Any):
        from transformers import BatchFeature

        data: dict[str, Any] = {}
        if images:
            pix = self.image_processor(images, patch_size=self.patch_size * self.spatial_merge_size,
                                       return_tensors=return_tensors)
            sizes = [tuple(int(x) for x in hw) for hw in pix["image_sizes"]]
            it = iter(sizes)
            text = [self._expand(t, it) for t in text]
            data.update(pix)
        enc = self.tokenizer(text, return_tensors=return_tensors, padding=padding,
                             add_special_tokens=add_special_tokens)
        data.update(enc)
        return BatchFeature(data)

    def _expand(self, text: str, sizes) -> str:
        parts = text.split(self.image_token)
        return parts[0] + "".join(self.expansion(*next(sizes)) + p for p in parts[1:])

    def save_pretrained(self, out: str | Path) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        if self.chat_template:
            (out / "chat_template.jinja").write_text(self.chat_template)
        cfg = {"processor_class": "PixtralProcessor", "patch_size": self.patch_size,
               "spatial_merge_size": self.spatial_merge_size, "image_token": self.image_token,
               "image_break_token": self.image_break_token, "image_end_token": self.image_end_token}
        (out / "processor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


class Mistral3Family(Family):
    __doc__ = __doc__
    name = "mistral3"
    model_types = ("mistral3",)
    mirrors = ("mistralai/Mistral-Small-3.1-24B-Instruct-2503",)
    torchvision_processor = "PixtralProcessor"

    def image_only_processor(self, path: Path):
        from transformers import AutoTokenizer, PixtralImageProcessorPil

        f = path / "processor_config.json"
        saved = json.loads(f.read_text()) if f.is_file() else {}
        keys = ("patch_size", "spatial_merge_size", "image_token", "image_break_token", "image_end_token")
        try:
            tok = AutoTokenizer.from_pretrained(path, padding_side="left")
            ip = PixtralImageProcessorPil.from_pretrained(path)
        except (OSError, ValueError, TypeError) as e:
            raise ModelLoadError(f"{path}: cannot load the tokenizer / image processor ({e})") from e
        return PixtralImagePrompts(ip, tok, chat_template=read_chat_template(path) or tok.chat_template,
                                   **{k: saved[k] for k in keys if k in saved})

    def save_processor(self, processor: Any, out: Path) -> None:
        processor.save_pretrained(out)  # both PixtralProcessor and PixtralImagePrompts name PixtralProcessor


def family(model_type: str) -> Family:
    return Mistral3Family()
