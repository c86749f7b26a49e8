"""Tiny builders for the Qwen-tokenizer families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL.

Card (faithful vs shrunk) in halbench.testing.tiny_families. All five processors need a torchvision video
processor in transformers 5, so their parts are saved file by file (tiny_tok.save_processor_parts).
"""

from __future__ import annotations

from pathlib import Path

from halbench.testing import tiny_templates as tpl
from halbench.testing.tiny_families import CLIP_MEAN, CLIP_STD, HALF, TINY_TEXT, TINY_VISION, _gen, _seed
from halbench.testing.tiny_tok import family_tokenizer, ids, save_model, save_processor_parts, set_tokenizer_class

#: Qwen2 tokenizer control tokens, ids 151643..151656 in the published vocab, appended after the BPE vocab.
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def _qwen_tokenizer(template: str, added=QWEN_SPECIAL, named=None):
    # Qwen2 tokenizers have no BOS and no UNK; pad = <|endoftext|>, eos (instruct) = <|im_end|>
    return family_tokenizer(front=[], added=list(added), bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            unk=None, add_bos=False, chat_template=template, named=named)


def _qwen_vl_ids(tok) -> dict:
    image, video, start, end = ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return dict(image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)


def _qwen_text(tok, mrope_section, **over) -> dict:
    kw = dict(TINY_TEXT, vocab_size=len(tok), max_position_embeddings=32768, rms_norm_eps=1e-6,
              rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section},
              pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
              tie_word_embeddings=False)
    kw.update(over)
    return kw


def _qwen_save(model, tok, out_dir, *, seed, family, published, processor_class, image_processor_kw, template,
               image_processor_type="Qwen2VLImageProcessor") -> Path:
    from transformers import Qwen2VLImageProcessorPil

    # published generation_config: bos 151643, eos [151645, 151643], pad 151643
    gen = _gen(tok, bos_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id, tok.pad_token_id])
    out = save_model(model, out_dir, family=family, published=published, seed=seed, generation=gen)
    save_processor_parts(out, tokenizer=tok, image_processor=Qwen2VLImageProcessorPil(**image_processor_kw),
                         chat_template=template, processor_config={"processor_class": processor_class},
                         image_processor_type=image_processor_type)
    set_tokenizer_class(out, "Qwen2Tokenizer")
    return out


def make_tiny_qwen2_vl(out_dir, seed: int = 0) -> Path:
    """Qwen/Qwen2-VL-7B-Instruct in miniature: min_pixels 3136 kept, max_pixels 112^2 (published 12845056)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    _seed(seed)
    tok = _qwen_tokenizer(tpl.QWEN2_VL)
    # published mrope_section [16, 24, 24] for head_dim 128 -> [2, 3, 3] for head_dim 16
    config = Qwen2VLConfig(
        text_config=_qwen_text(tok, [2, 3, 3]), **_qwen_vl_ids(tok), tie_word_embeddings=False,
        vision_config=dict(depth=2, embed_dim=32, hidden_size=TINY_TEXT["hidden_size"], mlp_ratio=4, num_heads=4,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    ip = dict(patch_size=14, merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD,
              size={"shortest_edge": 3136, "longest_edge": 112 * 112}, resample=3)
    return _qwen_save(model, tok, out_dir, seed=seed, family="qwen2_vl", published="Qwen/Qwen2-VL-7B-Instruct",
                      processor_class="Qwen2VLProcessor", image_processor_kw=ip, template=tpl.QWEN2_VL)


def make_tiny_qwen2_5_vl(out_dir, seed: int = 0) -> Path:
    """Qwen/Qwen2.5-VL-7B-Instruct in miniature: windowed vision attention (window 56 px, published 112 px for
    up to 12845056-pixel images) with the last block full attention (published [7, 15, 23, 31] of 32)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _seed(seed)
    tok = _qwen_tokenizer(tpl.QWEN2_VL)
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(tok, [2, 3, 3]), **_qwen_vl_ids(tok), tie_word_embeddings=False,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, hidden_act="silu",
                           out_hidden_size=TINY_TEXT["hidden_size"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, tokens_per_second=2, window_size=56, fullatt_block_indexes=[1]),
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    ip = dict(patch_size=14, merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD,
              size={"shortest_edge": 3136, "longest_edge": 112 * 112}, resample=3)
    return _qwen_save(model, tok, out_dir, seed=seed, family="qwen2_5_vl", published="Qwen/Qwen2.5-VL-7B-Instruct",
                      processor_class="Qwen2_5_VLProcessor", image_processor_kw=ip, template=tpl.QWEN2_VL)


def make_tiny_qwen3_vl(out_dir, seed: int = 0) -> Path:
    """Qwen/Qwen3-VL-8B-Instruct in miniature: patch 16, deepstack from vision blocks [0, 1] (published
    [8, 16, 24] of 27) into the first LM layers, interleaved M-RoPE, learned 4x4 position grid (published 48x48)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    _seed(seed)
    tok = _qwen_tokenizer(tpl.QWEN3_VL)
    text = _qwen_text(tok, [3, 3, 2], head_dim=16, max_position_embeddings=262144)
    text["rope_parameters"].update(rope_theta=5e6, mrope_interleaved=True)
    config = Qwen3VLConfig(
        text_config=text, **_qwen_vl_ids(tok), tie_word_embeddings=False,
        vision_config=dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=TINY_TEXT["hidden_size"],
                           num_position_embeddings=16, deepstack_visual_indexes=[0, 1],
                           hidden_act="gelu_pytorch_tanh"),
    )
    model = Qwen3VLForConditionalGeneration(config).eval()
    ip = dict(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=HALF, image_std=HALF,
              size={"shortest_edge": 32 * 32, "longest_edge": 128 * 128}, resample=3)
    return _qwen_save(model, tok, out_dir, seed=seed, family="qwen3_vl", published="Qwen/Qwen3-VL-8B-Instruct",
                      processor_class="Qwen3VLProcessor", image_processor_kw=ip, template=tpl.QWEN3_VL)


def make_tiny_llava_onevision(out_dir, seed: int = 0) -> Path:
    """llava-hf/llava-onevision-qwen2-7b-ov-hf in miniature: SigLIP 28 px (4 tokens per tile, published 729),
    pinpoints 28*(1..6) (published 384*(1..6)), anyres_max_9."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, Qwen2Config, SiglipVisionConfig)

    _seed(seed)
    # published added_tokens.json: <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, <image>, <video>
    tok = _qwen_tokenizer(tpl.LLAVA_ONEVISION, added=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>",
                                                     "<video>"], named={"image_token": "<image>",
                                                                        "video_token": "<video>"})
    image_id, video_id = ids(tok, "<image>", "<video>")
    pinpoints = [[28 * i, 28 * j] for i in range(1, 7) for j in range(1, 7)]
    text = Qwen2Config(**_qwen_text(tok, None, rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    config = LlavaOnevisionConfig(
        text_config=text, vision_config=SiglipVisionConfig(**TINY_VISION, image_size=28, patch_size=14,
                                                           vision_use_head=False),
        image_token_index=image_id, video_token_index=video_id, projector_hidden_act="gelu",
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False,
    )
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="llava_onevision", published="llava-hf/llava-onevision-qwen2-7b-ov-hf",
                     seed=seed, generation=_gen(tok, bos_token_id=tok.pad_token_id))
    ip = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_mean=HALF, image_std=HALF,
                                         do_pad=True, do_convert_rgb=True, resample=3, image_grid_pinpoints=pinpoints)
    save_processor_parts(out, tokenizer=tok, image_processor=ip, chat_template=tpl.LLAVA_ONEVISION,
                         image_processor_type="LlavaOnevisionImageProcessor", processor_config={
                             "processor_class": "LlavaOnevisionProcessor", "image_token": "<image>",
                             "video_token": "<video>", "num_image_tokens": 4, "vision_feature_select_strategy": "full",
                             "vision_aspect_ratio": "anyres_max_9"})
    set_tokenizer_class(out, "Qwen2Tokenizer")
    return out


def make_tiny_internvl(out_dir, seed: int = 0) -> Path:
    """OpenGVLab/InternVL3-1B-hf in miniature: 56 px tiles (published 448) of 4 tokens (published 256), 1..12
    tiles + thumbnail as published, Qwen2 LM with tied embeddings (as the 1B)."""
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

    _seed(seed)
    extra = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
    tok = _qwen_tokenizer(tpl.INTERNVL, added=QWEN_SPECIAL + extra + ["<video>"], named={
        "start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>"})
    (context_id,) = ids(tok, "<IMG_CONTEXT>")
    config = InternVLConfig(
        text_config=dict(_qwen_text(tok, None, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                                    tie_word_embeddings=True), model_type="qwen2"),
        vision_config=dict(TINY_VISION, image_size=[56, 56], patch_size=[14, 14], layer_scale_init_value=0.1,
                           norm_type="layer_norm", use_qk_norm=False, use_mean_pooling=True, hidden_act="gelu"),
        image_token_id=context_id, image_seq_length=4, downsample_ratio=0.5, projector_hidden_act="gelu",
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=True,
    )
    model = InternVLForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="internvl", published="OpenGVLab/InternVL3-1B-hf", seed=seed,
                     generation=_gen(tok, bos_token_id=tok.pad_token_id))
    ip = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1,
                                  max_patches=12, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                  do_convert_rgb=True, resample=3)
    save_processor_parts(out, tokenizer=tok, image_processor=ip, chat_template=tpl.INTERNVL,
                         image_processor_type="GotOcr2ImageProcessor",
                         processor_config={"processor_class": "InternVLProcessor", "image_seq_length": 4})
    set_tokenizer_class(out, "Qwen2Tokenizer")
    return out
