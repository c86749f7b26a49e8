"""A tiny checkpoint in the ORIGINAL LLaVA repository layout (haotian-liu/LLaVA), plus the CLIP tower it names.

Layout as released by liuhaotian/llava-v1.5-7b and the alignment checkpoints fine-tuned from it (LLaVA-RLHF,
POVID, RLAIF-V, HA-DPO): config.json is a Llama config with `architectures: [LlavaLlamaForCausalLM]`,
`model_type: llava_llama` (older releases: `llava`) and the mm_* fields of LLaVA's `ModelArguments`; the weights
are the Llama LM's (`model.*`, `lm_head.weight`) plus `model.mm_projector.0.*` / `model.mm_projector.2.*`
(mlp2x_gelu); the tokenizer has no <image> token (LLaVA splices image features in at IMAGE_TOKEN_INDEX = -200)
and pads with <unk>. The CLIP tower (openai/clip-vit-large-patch14-336, a CLIPModel) is a separate directory.
Shrunk: widths, depths, vocabulary, 28 px images (patch 14 kept).
"""

from __future__ import annotations

import json
from pathlib import Path

from halbench.testing.tiny_families import CLIP_MEAN, CLIP_STD, LLAMA_FRONT, TINY_TEXT, _clip_image_kwargs, _seed
from halbench.testing.tiny_tok import family_tokenizer, set_image_processor_type, set_tokenizer_class

#: The mm_* / LLaVA fields of liuhaotian/llava-v1.5-7b's config.json (mm_hidden_size is the tower's width).
ORIGINAL_FIELDS = {
    "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "freeze_mm_mlp_adapter": False,
    "image_aspect_ratio": "pad", "mm_hidden_size": 32, "mm_patch_merge_type": "flat", "mm_projector_lr": None,
    "mm_projector_type": "mlp2x_gelu", "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
    "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2,
    "mm_vision_tower": "openai/clip-vit-large-patch14-336", "tokenizer_model_max_length": 2048,
    "tokenizer_padding_side": "right", "tune_mm_mlp_adapter": False, "use_mm_proj": True,
}


def make_tiny_clip(out_dir, seed: int = 0) -> Path:
    """A tiny CLIPModel dir shaped like openai/clip-vit-large-patch14-336 (CLIPModel + CLIPImageProcessor)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    _seed(seed)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=99, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=28, patch_size=14, hidden_act="quick_gelu"),
        projection_dim=16,
    )
    out = Path(out_dir)
    CLIPModel(config).eval().save_pretrained(out)
    CLIPImageProcessorPil(**_clip_image_kwargs(28)).save_pretrained(out)
    set_image_processor_type(out, "CLIPImageProcessor")
    return out


def make_tiny_original_llava(out_dir, seed: int = 0, *, weights: str = "safetensors", tuned_tower=None,
                             **field_overrides) -> Path:
    """The original-LLaVA layout in miniature (see module docstring); `field_overrides` edit config.json.
    `weights`: "safetensors" (model.safetensors) or "bin" (pytorch_model.bin, as many older releases ship).
    `tuned_tower`: a CLIP dir whose vision weights are stored inside the checkpoint as LLaVA saves a tower it
    fine-tuned (`model.vision_tower.vision_tower.vision_model.*`), perturbed so they differ from the stock tower."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    _seed(seed)
    tok = family_tokenizer(front=LLAMA_FRONT, bos="<s>", eos="</s>", pad="<unk>", unk="<unk>", add_bos=True,
                           chat_template=None, padding_side="right", style="metaspace")
    text = LlamaConfig(**TINY_TEXT, vocab_size=len(tok), max_position_embeddings=4096, rms_norm_eps=1e-5,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    lm = LlamaForCausalLM(text).eval()
    hidden, vision = TINY_TEXT["hidden_size"], ORIGINAL_FIELDS["mm_hidden_size"]
    proj = {"model.mm_projector.0.weight": torch.randn(hidden, vision) * 0.2, "model.mm_projector.0.bias":
            torch.randn(hidden) * 0.1, "model.mm_projector.2.weight": torch.randn(hidden, hidden) * 0.2,
            "model.mm_projector.2.bias": torch.randn(hidden) * 0.1}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in {**lm.state_dict(), **proj}.items()}
    if tuned_tower is not None:
        sd.update(_tuned_tower_tensors(Path(tuned_tower)))
    if weights == "bin":
        torch.save(sd, out / "pytorch_model.bin")
    else:
        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = {**text.to_dict(), **ORIGINAL_FIELDS, **field_overrides}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    lm.generation_config.save_pretrained(out)
    tok.save_pretrained(out)
    set_tokenizer_class(out, "LlamaTokenizer")
    return out


def _tuned_tower_tensors(clip_dir: Path) -> dict:
    from safetensors.torch import load_file

    stock = load_file(str(clip_dir / "model.safetensors"))
    return {"model.vision_tower.vision_tower." + k: (v + 0.01).contiguous() if v.is_floating_point() else v
            for k, v in stock.items() if k.startswith("vision_model.")}


__all__ = ["make_tiny_clip", "make_tiny_original_llava", "ORIGINAL_FIELDS", "CLIP_MEAN", "CLIP_STD"]
