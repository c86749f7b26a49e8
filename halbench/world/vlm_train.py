"""The world's tiny VLM: LLaVA architecture on the world's CLIP tower, trained on captions and yes/no VQA.

Architecture (as LLaVA-1.5, scaled down): `LlavaForConditionalGeneration` = the CLIP vision tower from
clip_train (frozen, penultimate layer, CLS dropped -> 64 patch tokens), a 2-layer GELU MLP projector, and a
small Llama decoder. The processor is a `LlavaProcessor` (PIL CLIP image processor + BPE tokenizer + the
LLaVA-1.5 chat template "USER: <image>\\n{prompt} ASSISTANT:"), so AutoProcessor /
AutoModelForImageTextToText load the directory like any llava-hf checkpoint.

Training (LLaVA stage-2 style instruction tuning, projector + LM trainable, vision tower frozen): each
sequence is one image followed by shuffled turns
  * "Please describe this image in detail." -> a detailed caption listing every object (largest first) that
    sometimes (captions.py) also names an absent, frequently co-occurring object (captions.py);
  * a short-caption prompt -> one of the image's 5 reference captions;
  * "Is there a {obj} in the image?" -> "Yes" / "No" (present objects and uniformly drawn absent ones).
Because the tower is frozen, its features are computed once per image and cached; the training step then
runs exactly LlavaModel's computation (embed tokens, scatter projected image features into the <image>
positions, run the decoder) on those features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from halbench.world.captions import detailed_caption
from halbench.world.clip_train import image_processor, to_pixels
from halbench.world.cooccurrence import CooccurrenceTable
from halbench.world.generate import Split

DETAIL_PROMPT = "Please describe this image in detail."
SHORT_PROMPTS = ["Generate a short caption of the image.", "Provide a brief description of the given image."]
VQA_PROMPT = "Is there a {} in the image?"
IGNORE = -100


@dataclass
class VlmConfig:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    vocab_size: int = 640
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    noise_scale: float = 1.0  # detailed captions name absent Y* with prob noise_scale * P_COCO(Y*|x) (captions.py)
    n_vqa: int = 4  # yes/no turns per sequence (half present, half absent objects)
    p_short: float = 0.5  # probability a sequence also has a short-caption turn


def build_vlm_tokenizer(texts: list[str], vocab_size: int):
    from halbench.testing.tiny import build_tokenizer

    return build_tokenizer(texts, vocab_size, padding_side="left")


def make_vlm(clip_model, tokenizer, cfg: VlmConfig, seed: int):
    """A LlavaForConditionalGeneration whose vision tower holds the trained CLIP vision weights."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from halbench.testing.tiny import IMAGE_TOKEN

    torch.manual_seed(seed)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
                       num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=True)
    config = LlavaConfig(vision_config=clip_model.config.vision_config.to_dict(), text_config=text.to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(clip_model.vision_model.state_dict())
    model.model.vision_tower.requires_grad_(False)
    return model


def make_processor(tokenizer, image_size: int, patch_size: int):
    from transformers import LlavaProcessor

    from halbench.testing.tiny import LLAVA_CHAT_TEMPLATE

    # CLIP tower with a CLS token: +1 additional token, then "default" drops CLS -> (size/patch)^2 tokens
    return LlavaProcessor(image_processor=image_processor(image_size), tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA_CHAT_TEMPLATE)


@torch.no_grad()
def vision_features(model, images: np.ndarray, batch: int = 256, progress: bool = True) -> torch.Tensor:
    """Frozen-tower features the projector consumes: (N, patches, vision_hidden) float16 (cache)."""
    tower, layer = model.model.vision_tower.eval(), model.config.vision_feature_layer
    out = []
    for s in tqdm(range(0, len(images), batch), desc="vision features", disable=not progress, leave=False):
        hs = tower(pixel_values=to_pixels(images[s:s + batch]), output_hidden_states=True).hidden_states[layer]
        out.append(hs[:, 1:].to(torch.float16))  # "default" strategy: drop CLS
    return torch.cat(out)


class SequenceBuilder:
    """Turns (image, objects) into token ids + labels in the exact chat-template format of the processor."""

    def __init__(self, tokenizer, n_image_tokens: int, table: CooccurrenceTable, cfg: VlmConfig):
        from halbench.testing.tiny import IMAGE_TOKEN

        self.tok, self.cfg, self.table = tokenizer, cfg, table
        self.image_ids = [tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)] * n_image_tokens
        self._cache: dict[str, list[int]] = {}

    def _ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok(text, add_special_tokens=False).input_ids
        return self._cache[text]

    def turns(self, split: Split, i: int, rng: np.random.Generator) -> list[tuple[str, str]]:
        names, areas = split.object_names(i), split.areas(i)
        turns = [(DETAIL_PROMPT, detailed_caption(names, areas, self.table, rng, self.cfg.noise_scale)[0])]
        if rng.random() < self.cfg.p_short:
            caps = split.captions[i]
            turns.append((SHORT_PROMPTS[int(rng.integers(2))], caps[int(rng.integers(len(caps)))][0]))
        absent = [c for c in self.table.categories if c not in names]
        n_pos = min(len(names), self.cfg.n_vqa // 2)
        for obj in list(rng.choice(names, n_pos, replace=False)):
            turns.append((VQA_PROMPT.format(obj), "Yes"))
        for obj in list(rng.choice(absent, self.cfg.n_vqa - n_pos, replace=False)):
            turns.append((VQA_PROMPT.format(obj), "No"))
        return [turns[k] for k in rng.permutation(len(turns))]

    def encode(self, turns: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
        """bos USER: <image>*n \\n q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>... ; labels on answers."""
        ids, labels = [self.tok.bos_token_id], [IGNORE]
        for k, (q, a) in enumerate(turns):
            # segments split only where the full string's pre-tokenization splits too (checked in tests)
            if k == 0:
                prompt = self._ids("USER: ") + self.image_ids + self._ids("\n" + q + " ASSISTANT:")
            else:
                prompt = self._ids(f"USER: {q} ASSISTANT:")
            answer = self._ids(" " + a) + [self.tok.eos_token_id]
            ids += prompt + answer
            labels += [IGNORE] * len(prompt) + answer
        return ids, labels


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int):
    n = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), n), pad_id)
    labels = torch.full((len(batch), n), IGNORE)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for r, (x, y) in enumerate(batch):  # right padding for training (causal LM, no generation here)
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, labels, mask


def lm_loss(model, ids, labels, mask, feats) -> torch.Tensor:
    """LlavaModel.forward on cached tower features: scatter projected features into <image> slots."""
    embeds = model.get_input_embeddings()(ids)
    image_mask = (ids == model.config.image_token_index).unsqueeze(-1).expand_as(embeds)
    projected = model.model.multi_modal_projector(feats.float())
    embeds = embeds.masked_scatter(image_mask, projected.to(embeds.dtype))
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE)


def train_vlm(model, builder: SequenceBuilder, split: Split, feats: torch.Tensor, cfg: VlmConfig, seed: int,
              progress: bool = True) -> list[dict]:
    """Train projector + LM in place on freshly sampled conversations; returns a log every 50 steps."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    model.train()
    log = []
    for step in (bar := tqdm(range(cfg.steps), desc="train vlm", disable=not progress)):
        idx = rng.choice(len(split.image_ids), size=cfg.batch_size, replace=False)
        batch = [builder.encode(builder.turns(split, int(i), rng)) for i in idx]
        ids, labels, mask = _collate(batch, builder.tok.pad_token_id)
        loss = lm_loss(model, ids, labels, mask, feats[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": loss.item()})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return log


def save_vlm(model, processor, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.model.vision_tower.requires_grad_(True)
    tok = processor.tokenizer
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
    gen.do_sample, gen.max_new_tokens = False, 64
    model.eval().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
