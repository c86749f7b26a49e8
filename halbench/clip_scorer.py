"""CLIP image-text rewards: sentence-level (whole response) and token-level (each object mention).

Card
- Source: the fine-grained verifier of FiSAO (Cui et al., "Fine-Grained Verifiers: Preference Modeling as
  Next-token Prediction in Vision-Language Alignment", arXiv 2410.14148, ICLR 2025), which scores generated
  tokens with the VLM's own vision encoder (CLIP); and CLIPScore (Hessel et al., EMNLP 2021) for the
  whole-sentence reward.
- Reward = cosine similarity of L2-normalised projected CLIP embeddings (no logit scale, no clipping; CLIPScore
  would be 2.5 * max(cos, 0), a monotone map, so AUROCs and rank correlations are the same either way).
- Sentence-level reward: similarity of the image with the whole response text (truncated to the text tower's
  max positions; `truncated_count` counts how often that happened).
- Token-level reward: similarity of the image with each object mention, rendered through `phrase_template`
  (default "{}" = the mention as written). Which words are object mentions, and whether each is hallucinated,
  comes from the CHAIR pipeline (halbench.tasks.chair.ChairScorer); this module only scores text.
- Any Hugging Face `CLIPModel` directory works (config model_type "clip" with both towers, a tokenizer and an
  image processor saved next to it). Default: the embedded world's CLIP.
- Caches: one embedding per image path (the per-image cache the FiSAO loop relies on: every rollout on the
  same image reuses it) and one per distinct text (object phrases repeat across captions).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import torch

from halbench.errors import ModelLoadError
from halbench.images import load_image


class ClipScorer:
    """Image-text cosine similarities from any HF CLIPModel dir (default: the embedded world's CLIP)."""

    def __init__(self, clip_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 32,
                 phrase_template: str = "{}"):
        if clip_dir is None:
            from halbench.world import default_world

            clip_dir = default_world().clip_dir
        self.clip_dir = Path(clip_dir)
        self.device = torch.device(device)
        self.batch_size = batch_size
        if "{}" not in phrase_template:
            raise ValueError(f"phrase_template must contain '{{}}', got {phrase_template!r}")
        self.phrase_template = phrase_template
        self.model, self.tokenizer, self.image_processor = _load_clip(self.clip_dir, self.device)
        self.max_text_len = int(self.model.config.text_config.max_position_embeddings)
        self._image_cache: dict[str, torch.Tensor] = {}
        self._text_cache: dict[str, torch.Tensor] = {}
        self.truncated_count = 0

    # -- public API ------------------------------------------------------------------------------------
    def sentence_rewards(self, images: Sequence[str | Path], texts: Sequence[str]) -> list[float]:
        """Reward of texts[i] for images[i] (pairwise, same length), batched."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        img = self.image_embeddings(images)
        txt = self.text_embeddings(texts)
        return (img * txt).sum(-1).tolist()

    def token_rewards(self, image: str | Path, phrases: Sequence[str]) -> list[float]:
        """Reward of each object mention (phrase) for one image; [] for no phrases."""
        if not phrases:
            return []
        img = self.image_embeddings([image])[0]
        txt = self.text_embeddings([self.phrase_template.format(p) for p in phrases])
        return (txt @ img).tolist()

    def image_embeddings(self, images: Sequence[str | Path]) -> torch.Tensor:
        """[N, D] unit-norm image embeddings; each path is encoded once (cached), missing ones in batches."""
        keys = [str(Path(p).resolve()) for p in images]
        todo = list(dict.fromkeys(k for k in keys if k not in self._image_cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            pixels = self.image_processor(images=[load_image(k) for k in chunk], return_tensors="pt")
            emb = self._encode(self.model.get_image_features, pixel_values=pixels["pixel_values"])
            self._image_cache.update(zip(chunk, emb))
        return torch.stack([self._image_cache[k] for k in keys]) if keys else torch.empty(0)

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] unit-norm text embeddings (cached per distinct string)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_text_len,
                                 return_tensors="pt")
            self.truncated_count += self._count_truncated(chunk)
            emb = self._encode(self.model.get_text_features, input_ids=enc["input_ids"],
                               attention_mask=enc["attention_mask"])
            self._text_cache.update(zip(chunk, emb))
        return torch.stack([self._text_cache[t] for t in texts]) if texts else torch.empty(0)

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the weight files, so a result names the exact verifier used."""
        h = hashlib.sha256()
        for f in sorted(self.clip_dir.glob("*.safetensors")) + sorted(self.clip_dir.glob("*.bin")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()[:16]

    def clear_cache(self) -> None:
        self._image_cache.clear()
        self._text_cache.clear()

    # -- internals -------------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, fn, **inputs: torch.Tensor) -> torch.Tensor:
        out = fn(**{k: v.to(self.device) for k, v in inputs.items()})
        # transformers < 5 returns the projected tensor; >= 5 a BaseModelOutputWithPooling holding it
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float(), dim=-1).cpu()

    def _count_truncated(self, texts: list[str]) -> int:
        lengths = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        return sum(len(ids) > self.max_text_len for ids in lengths)


def _load_clip(clip_dir: Path, device: torch.device):
    """(CLIPModel, tokenizer, image processor) from a dir; ModelLoadError naming what is wrong."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel

    if not (clip_dir / "config.json").is_file():
        raise ModelLoadError(f"{clip_dir}: not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(clip_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{clip_dir}: unreadable config.json ({e})") from e
    if getattr(config, "model_type", None) != "clip":
        raise ModelLoadError(
            f"{clip_dir}: not a CLIP checkpoint (config model_type is {getattr(config, 'model_type', None)!r};"
            " need 'clip' with both vision and text towers)")
    try:
        model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(clip_dir, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(clip_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{clip_dir}: cannot load CLIP model/tokenizer/image processor ({e})") from e
    _check_eos(clip_dir, model, tokenizer)
    return model, tokenizer, image_processor


def _check_eos(clip_dir: Path, model, tokenizer) -> None:
    """CLIP pools the text at its EOS token (the first `eos_token_id`, or the highest id for legacy configs
    whose eos_token_id is 2). A tokenizer that does not end sequences with that token would silently pool
    the wrong position, so check on one unpadded sentence that the pooled position is the last token."""
    ids = torch.tensor(tokenizer(["a photo of a dog"])["input_ids"][0])
    eos = model.config.text_config.eos_token_id
    pooled = int(ids.argmax()) if eos == 2 else int((ids == eos).int().argmax())
    if pooled != len(ids) - 1 or (eos != 2 and ids[pooled] != eos):
        raise ModelLoadError(
            f"{clip_dir}: the text tower would pool token {pooled} of {ids.tolist()}, not the final EOS "
            f"(config eos_token_id={eos}); the tokenizer must append the text tower's EOS token")

