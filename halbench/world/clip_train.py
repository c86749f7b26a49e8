"""The world's tiny CLIP: build, train contrastively, save as a standard HF directory, evaluate.

Architecture: `transformers.CLIPModel` with a ViT vision tower (48x48 input, 8x8 patches -> 36 patch tokens +
CLS) and a small causal text transformer; both project to a shared embedding space. The same vision tower
later becomes the VLM's (see vlm_train.py), as in LLaVA.

Training objective (per batch of B images):
  * symmetric InfoNCE between images and one of their 5 reference captions (CLIP, Radford et al. 2021);
  * a multi-positive image-text term against the K class prompts "a photo of a {class}." (sigmoid loss as in
    SigLIP, Zhai et al. 2023; positives = the objects in the image). It teaches exactly the fine-grained
    question the verifier is asked ("is X in this image?"), which InfoNCE over whole captions learns slowly.
Both terms are image-text contrastive; no classifier head is added to the model.

The tokenizer is a real BPE built offline (halbench.testing.tiny.build_tokenizer) with an end-of-text token
appended to every text: CLIP pools the text at that token (config.eos_token_id; an id of 2 would select the
legacy argmax pooling, so a dedicated token is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from halbench.world.generate import Split

CLIP_EOT = "<|endoftext|>"
CLASS_PROMPT = "a photo of a {}."
# CLIP's normalisation constants (openai/clip-vit-base-patch32 preprocessor_config.json)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipConfig:
    image_size: int = 48
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 3
    text_hidden: int = 128
    text_layers: int = 2
    embed_dim: int = 128
    vocab_size: int = 640
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    class_loss_weight: float = 1.0


def build_clip_tokenizer(texts: list[str], vocab_size: int):
    """BPE tokenizer whose texts end with CLIP_EOT (the pooling position); right padding for CLIP."""
    from tokenizers import processors

    from halbench.testing.tiny import build_tokenizer

    tok = build_tokenizer(texts, vocab_size, extra_special_tokens=[CLIP_EOT], padding_side="right")
    bos, eot = tok.bos_token, CLIP_EOT
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eot}", special_tokens=[(bos, tok.bos_token_id), (eot, tok.convert_tokens_to_ids(eot))]
    )
    return tok


def make_clip(tokenizer, cfg: ClipConfig, seed: int):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    eot = tokenizer.convert_tokens_to_ids(CLIP_EOT)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 3,
                         num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=eot, projection_dim=cfg.embed_dim),
        vision_config=dict(hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 3,
                           num_hidden_layers=cfg.vision_layers, num_attention_heads=4, image_size=cfg.image_size,
                           patch_size=cfg.patch_size, projection_dim=cfg.embed_dim),
        projection_dim=cfg.embed_dim,
    )
    return CLIPModel(config)


def image_processor(image_size: int):
    """PIL-backed CLIP preprocessing (torchvision is not required): resize, center-crop, normalise."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                 crop_size={"height": image_size, "width": image_size}, do_center_crop=True,
                                 do_convert_rgb=True, image_mean=list(MEAN), image_std=list(STD))


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) at the model's size -> normalised float (N, 3, H, W), same as the image processor."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _class_targets(split: Split, idx: np.ndarray, categories: list[str]) -> torch.Tensor:
    pos = {c: k for k, c in enumerate(categories)}
    y = torch.zeros(len(idx), len(categories))
    for r, i in enumerate(idx):
        for name in split.object_names(int(i)):
            y[r, pos[name]] = 1.0
    return y


def clip_loss(model, pixels, text_ids, text_mask, class_ids, class_mask, targets, bias, class_w: float):
    """InfoNCE over (image, caption) pairs + sigmoid loss over (image, class prompt) pairs."""
    img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)  # (B, D)
    txt = F.normalize(model.get_text_features(input_ids=text_ids, attention_mask=text_mask).pooler_output, dim=-1)
    cls = F.normalize(model.get_text_features(input_ids=class_ids, attention_mask=class_mask).pooler_output, dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * img @ txt.T  # (B, B)
    labels = torch.arange(len(img))
    nce = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    sig = F.binary_cross_entropy_with_logits(scale * img @ cls.T + bias, targets)  # (B, K)
    return nce + class_w * sig, nce.detach(), sig.detach()


def train_clip(model, tokenizer, split: Split, categories: list[str], cfg: ClipConfig, seed: int,
               progress: bool = True) -> list[dict]:
    """Train in place; returns a small log (one dict per 50 steps)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    bias = torch.nn.Parameter(torch.tensor(-5.0))  # SigLIP's learnable bias; not part of the saved model
    opt = torch.optim.AdamW(list(model.parameters()) + [bias], lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    cls = tokenizer([CLASS_PROMPT.format(c) for c in categories], padding=True, return_tensors="pt")
    log, model = [], model.train()
    for step in (bar := tqdm(range(cfg.steps), desc="train clip", disable=not progress)):
        idx = rng.choice(len(split.image_ids), size=cfg.batch_size, replace=False)
        caps = [split.captions[int(i)][int(rng.integers(len(split.captions[int(i)])))][0] for i in idx]
        txt = tokenizer(caps, padding=True, return_tensors="pt")
        loss, nce, sig = clip_loss(model, to_pixels(split.images[idx]), txt.input_ids, txt.attention_mask,
                                   cls.input_ids, cls.attention_mask, _class_targets(split, idx, categories),
                                   bias, cfg.class_loss_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": loss.item(), "nce": float(nce), "class": float(sig)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return log


def save_clip(model, tokenizer, out_dir: str | Path, image_size: int) -> Path:
    from transformers import CLIPProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor(image_size), tokenizer=tokenizer).save_pretrained(out)
    return out


@torch.no_grad()
def class_scores(model, tokenizer, images: np.ndarray, categories: list[str], batch: int = 256) -> np.ndarray:
    """Cosine similarity of each image with each class prompt, (N, K)."""
    model.eval()
    cls = tokenizer([CLASS_PROMPT.format(c) for c in categories], padding=True, return_tensors="pt")
    t = F.normalize(model.get_text_features(**cls).pooler_output, dim=-1)
    out = []
    for s in range(0, len(images), batch):
        v = model.get_image_features(pixel_values=to_pixels(images[s:s + batch])).pooler_output
        out.append((F.normalize(v, dim=-1) @ t.T).numpy())
    return np.concatenate(out)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) identity; ties get average ranks."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float).ravel(), np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def clip_presence_auroc(model, tokenizer, split: Split, categories: list[str]) -> float:
    """AUROC of "is object X in this image" over every (image, class) pair of the split."""
    scores = class_scores(model, tokenizer, split.images, categories)
    labels = _class_targets(split, np.arange(len(split.image_ids)), categories).numpy()
    return auroc(scores, labels)
