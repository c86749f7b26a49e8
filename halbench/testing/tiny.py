"""Tiny random-weight VLM checkpoints built offline, for tests, benchmarks and demos.

Nothing here downloads anything: the tokenizer is a real byte-level BPE trained with the `tokenizers` library
on the caller's texts plus a small built-in English + COCO-words corpus, and the models are random-weight
`transformers` architectures (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL) saved as ordinary HF directories
(config.json + model.safetensors + tokenizer + processor). `AutoProcessor.from_pretrained` and
`AutoModelForImageTextToText.from_pretrained` load them offline, so every code path that works on them works
on a real checkpoint of the same architecture.

Image processors are the PIL backends (`*ImageProcessorPil`): torchvision is not installed here.
transformers-5.x pitfalls handled below: LlavaProcessor needs `num_additional_image_tokens=1` for a CLIP tower
with a CLS token; `padding_side` must be passed to the tokenizer constructor; no default chat template exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

#: The 80 COCO category names (so captions about COCO objects tokenize into few pieces).
COCO_CLASSES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).replace("_", " ").split(" ")

_BASE_CORPUS = [
    "Is there a {c} in the image? Yes, there is a {c} in the image.",
    "Is there a {c} in the image? No, there is no {c} in the image.",
    "Describe this image in detail. The image shows a {c} next to a table in a room.",
    "A {c} is sitting on the ground near a person. Please answer yes or no.",
    "There are two {c}s and a dog on the street. What is in the picture?",
    "USER: <image>\nIs there a {c} in the image? ASSISTANT: Yes, there is a {c}.",
    "<|im_start|>user\nDescribe the {c}.<|im_end|>\n<|im_start|>assistant\nA {c}.",
]

#: Special tokens every tiny tokenizer has (ids 0..4 in this order).
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
IMAGE_TOKEN = "<image>"

#: LLaVA-1.5 conversation format ("USER: <image>\n{prompt} ASSISTANT:"), as in llava-hf/llava-1.5-7b-hf.
#: The image placeholder is emitted only for messages that contain an image part.
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for p in parts if p['type'] == 'text' -%}{{ p['text'] }}{%- endfor -%}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}"
    "USER: {% for p in parts if p['type'] == 'image' %}<image>\n{% endfor -%}"
    "{%- for p in parts if p['type'] == 'text' -%}{{ p['text'] }}{%- endfor -%}{{ ' ' }}"
    "{%- else -%}"
    "ASSISTANT: {% for p in parts if p['type'] == 'text' %}{{ p['text'] }}{% endfor %}{{ eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)

#: Qwen2-VL conversation format (ChatML with vision markers), as in Qwen/Qwen2-VL-2B-Instruct.
QWEN2VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- for p in parts -%}"
    "{%- if p['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif p['type'] == 'text' -%}{{ p['text'] }}{%- endif -%}"
    "{%- endfor -%}<|im_end|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)
QWEN2VL_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                   "<|video_pad|>"]


def base_corpus() -> list[str]:
    """The built-in training corpus: prompt/answer sentences about every COCO class."""
    return [t.format(c=c) for c in COCO_CLASSES for t in _BASE_CORPUS]


def build_tokenizer(
    texts: Iterable[str] = (),
    vocab_size: int = 1024,
    *,
    extra_special_tokens: Iterable[str] = (),
    chat_template: str = LLAVA_CHAT_TEMPLATE,
    padding_side: str = "left",
    image_token: str = IMAGE_TOKEN,
):
    """A real byte-level BPE tokenizer trained offline on `texts` + the built-in corpus.

    Ids 0-4 are <pad> <s> </s> <unk> <image>; `extra_special_tokens` follow. `tokenizer.image_token` is
    `image_token` (the placeholder processors expand; Qwen2-VL's is <|image_pad|>). Encoding adds <s> in front
    (like Llama); decoding round-trips any text (byte-level, so <unk> never appears). `padding_side` goes to
    the constructor (transformers 5 ignores it when set later on some code paths).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + [IMAGE_TOKEN] + list(extra_special_tokens)
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(specials) + 1),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) + base_corpus(), trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        padding_side=padding_side,
        chat_template=chat_template,
        model_max_length=2048,
        extra_special_tokens={"image_token": image_token},
        **SPECIAL_TOKENS,
    )


def _llama_text_config(tokenizer, **over):
    from transformers import LlamaConfig

    kw = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    kw.update(over)
    return LlamaConfig(**kw)


def _clip_vision_config(image_size: int = 32, patch_size: int = 8):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    )


def _clip_image_kwargs(image_size: int) -> dict:
    # CLIP's normalisation constants (openai/clip-vit-large-patch14 preprocessor_config.json)
    return dict(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, do_convert_rgb=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def _save(model, processor, out_dir: str | Path, seed: int) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.get_text_config()
    model.generation_config.pad_token_id = cfg.pad_token_id
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.bos_token_id = cfg.bos_token_id
    model.save_pretrained(out, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(out)
    (out / "TINY_MODEL.md").write_text(
        f"Random-weight tiny {type(model).__name__} built by halbench.testing.tiny (seed={seed}). "
        "For tests only: it has never been trained.\n"
    )
    return out


def make_tiny_llava(out_dir: str | Path, seed: int = 0, texts: Iterable[str] = ()) -> Path:
    """A random-weight LlavaForConditionalGeneration (CLIP 32px/8px-patch tower, 2-layer Llama), ~0.2 MB."""
    import torch
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(texts)
    config = LlavaConfig(
        vision_config=_clip_vision_config(), text_config=_llama_text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(**_clip_image_kwargs(32)), tokenizer=tokenizer,
        patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(model, processor, out_dir, seed)


def make_tiny_llava_next(out_dir: str | Path, seed: int = 0, texts: Iterable[str] = ()) -> Path:
    """A random-weight LlavaNextForConditionalGeneration with anyres tiling (32px tiles, 2x1 / 1x2 grids)."""
    import torch
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(texts)
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = LlavaNextConfig(
        vision_config=_clip_vision_config(), text_config=_llama_text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_grid_pinpoints=pinpoints,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessorPil(**_clip_image_kwargs(32), image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(model, processor, out_dir, seed)


def make_tiny_qwen2vl(out_dir: str | Path, seed: int = 0, texts: Iterable[str] = ()) -> Path:
    """A random-weight Qwen2VLForConditionalGeneration (4px patches, 2x2 merge, M-RoPE), dynamic resolution."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(texts, extra_special_tokens=QWEN2VL_SPECIAL, chat_template=QWEN2VL_CHAT_TEMPLATE,
                                image_token="<|image_pad|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2VL_SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=4, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48},  # min/max pixels: 4..36 merged tokens
    )
    out = _save(model, None, out_dir, seed)
    # Qwen2VLProcessor insists on a video processor, which needs torchvision (absent here): save the parts and
    # a processor_config.json naming the standard class, exactly as a real Qwen2-VL checkpoint has them.
    image_processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN2VL_CHAT_TEMPLATE)
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2))
    return out
