"""A tiny SmolVLM checkpoint with SmolVLM's own classes (model_type `smolvlm`), for tests/test_families.py.

halbench.testing.tiny_families builds every other family from the published files; its `smolvlm` mirrors
HuggingFaceTB/SmolVLM-Instruct, which ships Idefics3 classes. The later SmolVLM-256M/500M-Instruct and SmolVLM2
checkpoints are `SmolVLMForConditionalGeneration` + `SmolVLMProcessor` (whose video part needs torchvision), the
path this builder covers: same tokenizer and template as the tiny SmolVLM-Instruct, SmolVLM config / model /
image-processor classes, processor files written one by one as on the hub (processor_config.json naming
SmolVLMProcessor with image_seq_len; the video processor reads preprocessor_config.json where it can be built).
"""

from __future__ import annotations

from pathlib import Path


def make_smolvlm(out_dir, seed: int = 0) -> Path:
    import torch
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

    from halbench.testing import tiny_templates as tpl
    from halbench.testing.tiny_families import HALF, TINY_VISION, _text_config
    from halbench.testing.tiny_families_more import _IDEFICS_ADDED
    from halbench.testing.tiny_tok import family_tokenizer, ids, save_model, save_processor_parts

    torch.manual_seed(seed)
    tok = family_tokenizer(front=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], added=_IDEFICS_ADDED,
                           bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>", unk="<|endoftext|>",
                           add_bos=False, chat_template=tpl.SMOLVLM, named={"image_token": "<image>"})
    tile, scale = 64, 2  # published SmolVLM-256M: 512 px tiles, patch 16, scale factor 4 -> 64 tokens
    config = SmolVLMConfig(vision_config=dict(TINY_VISION, image_size=tile, patch_size=16), scale_factor=scale,
                           image_token_id=ids(tok, "<image>")[0],
                           text_config=_text_config("llama", tok).to_dict(), tie_word_embeddings=False)
    model = SmolVLMForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="smolvlm_256m", published="HuggingFaceTB/SmolVLM-256M-Instruct",
                     seed=seed, generation={"eos_token_id": [tok.eos_token_id]})
    ip = SmolVLMImageProcessorPil(do_image_splitting=True, max_image_size={"longest_edge": tile},
                                  size={"longest_edge": 2 * tile}, image_mean=HALF, image_std=HALF, do_pad=True)
    seq = ((tile // 16) ** 2) // (scale ** 2) or 1
    save_processor_parts(out, tokenizer=tok, image_processor=ip, chat_template=tpl.SMOLVLM,
                         processor_config={"processor_class": "SmolVLMProcessor", "image_seq_len": seq},
                         image_processor_type="SmolVLMImageProcessor")
    return out
