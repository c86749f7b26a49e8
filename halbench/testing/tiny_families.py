"""Tiny random-weight checkpoints, one per VLM family, built offline from each family's PUBLISHED files.

Each `make_tiny_<family>(out_dir, seed=0) -> Path` writes an ordinary Hugging Face directory (config.json +
model.safetensors + generation_config.json + tokenizer + processor files) for the published checkpoint named
below: same model class and `model_type`, same processor / image-processor classes (the names written on
disk are the published ones), the published chat template text, the same special tokens, image-token
conventions and processor fields, the published `tokenizer_class` over a tokenizer of the same kind (byte-level
BPE for Qwen2 / Llama-3 / SmolLM2 / Tekken, SentencePiece-style BPE with byte fallback for Llama-2 / Vicuna /
Mistral-v0.2 / Gemma). Only sizes are shrunk: widths, depths, vocabulary (trained offline on halbench's corpus,
so the ids of end-appended tokens differ), image resolution (vision patch sizes are kept).
`build_family(name, cache_dir)` builds each once per process. What each published checkpoint declares, and
where that was read, is in halbench.testing.tiny_published; the chat templates in halbench.testing.tiny_templates.

| family | published checkpoint | faithful | shrunk |
|---|---|---|---|
| llava | llava-hf/llava-1.5-7b-hf | LlavaForConditionalGeneration, CLIP tower (patch 14, layer -2, "default"), LlavaProcessor (+1 CLS token), CLIPImageProcessor, template, <image>/<pad> appended | CLIP 28 px (4 patches), Llama 2x64 |
| llava_next_vicuna | llava-hf/llava-v1.6-vicuna-7b-hf | LlavaNextForConditionalGeneration, anyres pinpoints (x1/12), image_newline, LlavaNextProcessor, template, pad = <unk> (id 0) | 28 px tiles, Llama 2x64 |
| llava_next_mistral | llava-hf/llava-v1.6-mistral-7b-hf | as above with a Mistral LM and the [INST] template | as above |
| llava_onevision | llava-hf/llava-onevision-qwen2-7b-ov-hf | LlavaOnevisionForConditionalGeneration, SigLIP tower ("full", layer -1), anyres_max_9, Qwen2 LM, processor fields, ChatML template, <image>/<video> | SigLIP 28 px, pinpoints x28/384 |
| qwen2_vl | Qwen/Qwen2-VL-7B-Instruct | Qwen2VLForConditionalGeneration, M-RoPE, patch 14 / merge 2 / temporal 2, Qwen2VLImageProcessor, template, vision tokens | min/max pixels 56^2..112^2 |
| qwen2_5_vl | Qwen/Qwen2.5-VL-7B-Instruct | Qwen2_5_VLForConditionalGeneration, window attention + full-attention blocks, silu MLP vision, same tokens | as above |
| qwen3_vl | Qwen/Qwen3-VL-8B-Instruct | Qwen3VLForConditionalGeneration, patch 16, deepstack layers, interleaved M-RoPE, no default system prompt | 32^2..128^2 px |
| instructblip | Salesforce/instructblip-vicuna-7b | InstructBlipForConditionalGeneration, 32 query tokens, Q-Former + BERT tokenizer ([DEC]), vicuna tokenizer ([PAD] <image> <video> appended; bos/eos/unk "</s>"), no chat template | ViT 28 px, Q-Former 2 layers |
| gemma3 | google/gemma-3-4b-it | Gemma3ForConditionalGeneration, SigLIP + avg-pool projector, boi/eoi/image-soft tokens, Gemma3Processor, template | 56 px -> 4 soft tokens |
| idefics3 | HuggingFaceM4/Idefics3-8B-Llama3 | Idefics3ForConditionalGeneration, scale factor 2, image splitting, <fake_token_around_image>/<global-img>/<row_i_col_j>, template | 28 px tiles -> 1 token each |
| smolvlm | HuggingFaceTB/SmolVLM-Instruct | Idefics3 classes (model_type idefics3), scale factor 3, <|im_start|> template | 42 px tiles -> 1 token each |
| internvl | OpenGVLab/InternVL3-1B-hf | InternVLForConditionalGeneration (model_type internvl), pixel shuffle 0.5, GotOcr2 tiling (1..12 + thumbnail), <img>/<IMG_CONTEXT>/</img>, Qwen2 LM | 56 px tiles -> 4 tokens |
| mistral3 | mistralai/Mistral-Small-3.1-24B-Instruct-2503 | Mistral3ForConditionalGeneration, Pixtral tower (patch 14, 2D RoPE), patch merger 2, PixtralProcessor fields, [IMG]=10 [IMG_BREAK]=12 [IMG_END]=13 | longest edge 56 px |
| pixtral | mistral-community/pixtral-12b | LlavaForConditionalGeneration + Pixtral tower (patch 16, "full", layer -1), PixtralProcessor fields, same Tekken control ids | longest edge 64 px |

Environment notes (transformers 5.x without torchvision): processors whose class requires a video processor
(Qwen2/2.5/3-VL, LLaVA-OneVision, InternVL) or is torchvision-gated as a whole (PixtralProcessor for
Mistral3/Pixtral) cannot be instantiated here, so those parts are saved file by file, exactly as the published
repos have them; `AutoProcessor.from_pretrained` loads them wherever torchvision is installed, and
`AutoImageProcessor` / `AutoTokenizer` load them everywhere. See TORCHVISION_PROCESSORS.
Published "...Fast" image-processor names (Qwen3-VL, InternVL3-hf) are written under their transformers-5
names (the "Fast" suffix was removed in v5; the old name resolves to the same class there).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Callable

from halbench.testing import tiny_templates as tpl
from halbench.testing.tiny_tok import family_tokenizer, ids, save_model, set_image_processor_type, set_tokenizer_class

#: CLIP normalisation (openai/clip-vit-large-patch14-336 preprocessor_config.json).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]
LLAMA_FRONT = ["<unk>", "<s>", "</s>"]
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)

#: Processor classes that need torchvision in transformers 5 (a video processor, or the whole class gated).
TORCHVISION_PROCESSORS = {"Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Qwen3VLProcessor", "LlavaOnevisionProcessor",
                          "InternVLProcessor", "PixtralProcessor"}


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _llama_tokenizer(template: str, pad: str = "<pad>"):
    """Llama/Vicuna/Mistral-v0.2 layout: <unk>=0 <s>=1 </s>=2, then llava-hf's added <image> <pad> (32000, 32001)."""
    return family_tokenizer(front=LLAMA_FRONT, added=["<image>", "<pad>"], bos="<s>", eos="</s>", pad=pad,
                            unk="<unk>", add_bos=True, chat_template=template, named={"image_token": "<image>"},
                            style="metaspace")


def _clip(image_size: int):
    from transformers import CLIPVisionConfig

    # published: hidden_act quick_gelu, patch 14, projection_dim 768 (llava-1.5 config.json vision_config)
    return CLIPVisionConfig(**TINY_VISION, image_size=image_size, patch_size=14, projection_dim=32,
                            hidden_act="quick_gelu")


def _clip_image_kwargs(size: int) -> dict:
    return dict(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=True,
                do_convert_rgb=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, resample=3)


def _text_config(kind: str, tok, **over):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind]
    kw = dict(TINY_TEXT, vocab_size=len(tok), max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    kw.update(over)
    return cls(**kw)


def _gen(tok, **over) -> dict:
    g = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    g.update(over)
    return g


def make_tiny_llava(out_dir, seed: int = 0) -> Path:
    """llava-hf/llava-1.5-7b-hf in miniature (see the module table)."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    _seed(seed)
    tok = _llama_tokenizer(tpl.LLAVA_15)
    (image_id,) = ids(tok, "<image>")
    config = LlavaConfig(
        vision_config=_clip(28), text_config=_text_config("llama", tok, rms_norm_eps=1e-5),
        image_token_index=image_id, pad_token_id=tok.pad_token_id, projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=False,
        image_seq_length=4,  # (28 / 14) ** 2; published 576 = (336 / 14) ** 2
    )
    model = LlavaForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="llava", published="llava-hf/llava-1.5-7b-hf", seed=seed,
                     generation=_gen(tok))
    LlavaProcessor(image_processor=CLIPImageProcessorPil(**_clip_image_kwargs(28)), tokenizer=tok, patch_size=14,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=tpl.LLAVA_15).save_pretrained(out)
    set_image_processor_type(out, "CLIPImageProcessor", "LlavaProcessor")
    set_tokenizer_class(out, "LlamaTokenizer")
    return out


def _llava_next(out_dir, seed: int, *, lm: str, template: str, pad: str, published: str) -> Path:
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    _seed(seed)
    tok = _llama_tokenizer(template, pad=pad)
    # published pinpoints [[336,672],[672,336],[672,672],[1008,336],[336,1008]] for 336 px tiles, scaled to 28
    pinpoints = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
    over = dict(rms_norm_eps=1e-5) if lm == "llama" else dict(rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None)
    config = LlavaNextConfig(
        vision_config=_clip(28), text_config=_text_config(lm, tok, **over),
        image_token_index=ids(tok, "<image>")[0], projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_grid_pinpoints=pinpoints, tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
    )
    model = LlavaNextForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family=f"llava_next ({lm})", published=published, seed=seed, generation=_gen(tok))
    image_processor = LlavaNextImageProcessorPil(**_clip_image_kwargs(28), image_grid_pinpoints=pinpoints, do_pad=True)
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       chat_template=template).save_pretrained(out)
    set_image_processor_type(out, "LlavaNextImageProcessor", "LlavaNextProcessor")
    set_tokenizer_class(out, "LlamaTokenizer")
    return out


def make_tiny_llava_next_vicuna(out_dir, seed: int = 0) -> Path:
    """llava-hf/llava-v1.6-vicuna-7b-hf in miniature (text_config pad_token_id 0 = <unk>, as published)."""
    return _llava_next(out_dir, seed, lm="llama", template=tpl.LLAVA_15, pad="<unk>",
                       published="llava-hf/llava-v1.6-vicuna-7b-hf")


def make_tiny_llava_next_mistral(out_dir, seed: int = 0) -> Path:
    """llava-hf/llava-v1.6-mistral-7b-hf in miniature (Mistral LM, [INST] template)."""
    return _llava_next(out_dir, seed, lm="mistral", template=tpl.LLAVA_NEXT_MISTRAL, pad="<pad>",
                       published="llava-hf/llava-v1.6-mistral-7b-hf")


def _builders() -> dict[str, Callable[..., Path]]:
    from halbench.testing import tiny_families_qwen as q, tiny_families_more as m

    return {
        "llava": make_tiny_llava, "llava_next_vicuna": make_tiny_llava_next_vicuna,
        "llava_next_mistral": make_tiny_llava_next_mistral, "llava_onevision": q.make_tiny_llava_onevision,
        "qwen2_vl": q.make_tiny_qwen2_vl, "qwen2_5_vl": q.make_tiny_qwen2_5_vl, "qwen3_vl": q.make_tiny_qwen3_vl,
        "internvl": q.make_tiny_internvl, "instructblip": m.make_tiny_instructblip, "gemma3": m.make_tiny_gemma3,
        "idefics3": m.make_tiny_idefics3, "smolvlm": m.make_tiny_smolvlm, "mistral3": m.make_tiny_mistral3,
        "pixtral": m.make_tiny_pixtral,
    }


def family_names() -> list[str]:
    """Every family a tiny builder exists for (the keys of PUBLISHED)."""
    from halbench.testing.tiny_published import PUBLISHED

    return list(PUBLISHED)


_LOCK = threading.Lock()
_BUILT: dict[tuple[str, str], Path] = {}


def build_family(name: str, cache_dir: str | Path, seed: int = 0) -> Path:
    """Build family `name` into cache_dir/<name>-s<seed> once per process (later calls return the same dir)."""
    builders = _builders()
    if name not in builders:
        raise KeyError(f"no tiny builder for family {name!r}; known: {', '.join(sorted(builders))}")
    out = Path(cache_dir) / f"{name}-s{seed}"
    key = (name, str(out.resolve()))
    with _LOCK:
        if key not in _BUILT:
            shutil.rmtree(out, ignore_errors=True)  # no stale files from an older build in a reused cache dir
            _BUILT[key] = builders[name](out, seed=seed)
        return _BUILT[key]
