"""Checkpoints the benchmarks run on: the embedded world VLM, or random LLaVA-shaped models built offline."""

from __future__ import annotations

from pathlib import Path


def embedded_vlm(tmp_dir: Path, smoke: bool = False) -> tuple[Path, str]:
    """The embedded world's VLM directory and a label saying which model it is.

    With --smoke a random-weight tiny LLaVA from halbench.testing.tiny is built in `tmp_dir`; when the world
    is not built/installed, a random model of the embedded VLM's architecture (`world_shaped_vlm`). The
    label says which.
    """
    if smoke:
        from halbench.testing.tiny import make_tiny_llava

        path = make_tiny_llava(Path(tmp_dir) / "tiny_llava", seed=0)
        return path, "random tiny LLaVA from halbench.testing.tiny (--smoke)"
    try:
        from halbench.world import default_world

        world = default_world()
        return Path(world.vlm_dir), f"embedded world VLM ({world.vlm_dir})"
    except Exception as exc:  # noqa: BLE001 - any failure means "not available": fall back, say why
        reason = f"{type(exc).__name__}: {exc}"
    print(f"embedded world VLM not available ({reason[:160]}); using a random model of its architecture")
    return world_shaped_vlm(Path(tmp_dir)), WORLD_SHAPED_LABEL


WORLD_SHAPED_LABEL = "world-shaped random LLaVA (embedded VLM's architecture, random weights)"


def world_shaped_vlm(tmp_dir: Path) -> Path:
    """A random-weight LLaVA with the embedded world VLM's architecture (halbench/world/build.py defaults:
    CLIP 48px/8 -> 36 image tokens, vision width 128 x 3 layers; Llama width 128 x 4 layers, MLP 384, vocab 640,
    tied embeddings). Its speed is the embedded VLM's; its answers are not (random weights never say eos, so
    every answer runs to max_new_tokens)."""
    return make_random_llava(Path(tmp_dir) / "world_shaped", image_size=48, patch_size=8, vision_hidden=128,
                             vision_layers=3, text_hidden=128, text_layers=4, mlp_ratio=3, vocab_size=640,
                             tie_word_embeddings=True)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_random_llava(out_dir: Path, *, image_size: int = 336, patch_size: int = 14, vision_hidden: int = 64,
                      vision_layers: int = 2, text_hidden: int = 128, text_layers: int = 2, mlp_ratio: int = 2,
                      vocab_size: int = 512, tie_word_embeddings: bool = False, seed: int = 0) -> Path:
    """A random-weight LLaVA-1.5-*shaped* checkpoint (CLIP tower at `image_size`/`patch_size`, so 576 image
    tokens at 336/14 as in LLaVA-1.5-336) with small widths, saved like halbench.testing.tiny's models.

    The real tokenizer/processor classes are used (tokenizer from halbench.testing.tiny.build_tokenizer), so
    HFModel loads it offline like any checkpoint. Widths are small so it runs on a 2-core CPU; the point is
    the prompt shape (image tokens >> text tokens), which decides what prefix reuse saves.
    """
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from halbench.testing.tiny import IMAGE_TOKEN, LLAVA_CHAT_TEMPLATE, build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(vocab_size=vocab_size)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=text_hidden, intermediate_size=mlp_ratio * text_hidden,
                       num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=tie_word_embeddings)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=mlp_ratio * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=4, image_size=image_size,
                              patch_size=patch_size, projection_dim=vision_hidden)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=tie_word_embeddings)
    model = LlavaForConditionalGeneration(config).eval()
    clip_norm = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": image_size}, do_center_crop=True,
                                              crop_size={"height": image_size, "width": image_size}, **clip_norm),
        tokenizer=tok, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, k, getattr(tok, k))
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
