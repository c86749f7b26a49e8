"""Tiny random-weight checkpoints of every family, built offline for tests/test_families.py.

Each mirrors a published checkpoint's layout: the same model class, processor class (saved as a real
checkpoint saves it: processor_config.json naming the public class, tokenizer, preprocessor_config.json,
chat_template.jinja), the published chat template's shape, image-token conventions and config fields, with
small widths. Where a processor's video part needs torchvision (absent here) the parts are written one by one,
as on the hub. halbench.testing.tiny has the LLaVA-1.5 / LLaVA-NeXT / Qwen2-VL builders these reuse.
"""

from __future__ import annotations

import json
from pathlib import Path

from halbench.testing.tiny import (QWEN2VL_CHAT_TEMPLATE, SPECIAL_TOKENS, _clip_image_kwargs, _clip_vision_config,
                                   _save, base_corpus, make_tiny_llava, make_tiny_llava_next, make_tiny_qwen2vl)

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def tokenizer(specials=(), named=None, template=None, bos=True, vocab_size=1024):
    """A byte-level BPE tokenizer (like halbench.testing.tiny.build_tokenizer) with more named special tokens
    (boi_token, context_image_token, ...: processors read them as tokenizer attributes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    all_specials = list(SPECIAL_TOKENS.values()) + ["<image>"]
    for t in list(specials) + list(named.values()):
        if t not in all_specials:
            all_specials.append(t)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size, 256 + len(all_specials) + 1), special_tokens=all_specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(base_corpus(), trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    named.setdefault("image_token", "<image>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", chat_template=template,
                                   model_max_length=4096, extra_special_tokens=named, **SPECIAL_TOKENS)


def _ids(tok, *tokens):
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def _text_kw(tok, **over):
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    kw.update(over)
    return kw


def _save_parts(model, out, tok, image_processor, template, processor_class, **proc_kwargs) -> Path:
    """Save like a hub checkpoint whose processor cannot be built here (video part needs torchvision)."""
    out = _save(model, None, out, 0)
    image_processor.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "chat_template.jinja").write_text(template)
    (out / "processor_config.json").write_text(json.dumps({"processor_class": processor_class, **proc_kwargs},
                                                          indent=2))
    return out


# -- templates (the published ones' structure; tiny tokenizers write <s> as bos) ----------------------------
def _parts_loop(user_open, image, user_close, assistant_open, assistant_close, system=None, gen=""):
    sys = system or "{{ p['text'] }}{{ ' ' }}"
    return (
        "{%- for message in messages -%}"
        "{%- set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
        "else message['content'] -%}"
        "{%- if message['role'] == 'system' -%}{%- for p in parts if p['type'] == 'text' -%}" + sys +
        "{%- endfor -%}"
        "{%- elif message['role'] == 'user' -%}" + user_open +
        "{%- for p in parts if p['type'] == 'image' -%}" + image + "{%- endfor -%}"
        "{%- for p in parts if p['type'] == 'text' -%}{{ p['text'] }}{%- endfor -%}" + user_close +
        "{%- else -%}" + assistant_open +
        "{%- for p in parts if p['type'] == 'text' -%}{{ p['text'] }}{%- endfor -%}" + assistant_close +
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}" + gen + "{%- endif -%}"
    )


#: llava-hf/llava-v1.6-mistral-7b-hf
MISTRAL_LLAVA_TEMPLATE = _parts_loop("[INST] ", "<image>\n", " [/INST]", " ", "</s>")
#: llava-hf/llava-onevision-qwen2-7b-ov-hf (Qwen2 ChatML, images before the text)
ONEVISION_TEMPLATE = _parts_loop("<|im_start|>user ", "<image>", "<|im_end|>\n", "<|im_start|>assistant\n",
                                 "<|im_end|>\n", system="<|im_start|>system\n{{ p['text'] }}<|im_end|>\n",
                                 gen="<|im_start|>assistant\n").replace(
    "{%- for p in parts if p['type'] == 'text' -%}{{ p['text'] }}", "{%- for p in parts if p['type'] == 'text' -%}"
    "{{ '\\n' if message['role'] == 'user' else '' }}{{ p['text'] }}", 1)
#: google/gemma-3-4b-it (system text goes into the first user turn)
GEMMA3_TEMPLATE = "{{ bos_token }}" + _parts_loop(
    "<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n", "<end_of_turn>\n",
    system="{{ p['text'] }}{{ '\\n\\n' }}", gen="<start_of_turn>model\n")
#: HuggingFaceM4/Idefics3-8B-Llama3 / HuggingFaceTB/SmolVLM-256M-Instruct
IDEFICS3_TEMPLATE = "{{ bos_token }}" + _parts_loop(
    "User:", "<image>", "<end_of_utterance>\n", "Assistant: ", "<end_of_utterance>\n",
    system="System: {{ p['text'] }}<end_of_utterance>\n", gen="Assistant:")
#: OpenGVLab/InternVL3-1B-hf (ChatML, <IMG_CONTEXT> placeholder then a newline)
INTERNVL_TEMPLATE = _parts_loop("<|im_start|>user\n", "<IMG_CONTEXT>\n", "<|im_end|>\n",
                                "<|im_start|>assistant\n", "<|im_end|>\n",
                                system="<|im_start|>system\n{{ p['text'] }}<|im_end|>\n", gen="<|im_start|>assistant\n")
#: mistralai/Mistral-Small-3.1-24B-Instruct-2503
MISTRAL3_TEMPLATE = "{{ bos_token }}" + _parts_loop(
    "[INST]", "[IMG]", "[/INST]", "", "</s>", system="[SYSTEM_PROMPT]{{ p['text'] }}[/SYSTEM_PROMPT]")
QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


# -- builders -----------------------------------------------------------------------------------------------
def make_llava_next_mistral(out, seed=0):
    import torch
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor, MistralConfig)

    torch.manual_seed(seed)
    tok = tokenizer(template=MISTRAL_LLAVA_TEMPLATE)
    pins = [[32, 32], [32, 64], [64, 32]]
    cfg = LlavaNextConfig(vision_config=_clip_vision_config(), text_config=MistralConfig(**_text_kw(tok)),
                          image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                          vision_feature_select_strategy="default", image_grid_pinpoints=pins,
                          pad_token_id=tok.pad_token_id)
    proc = LlavaNextProcessor(image_processor=LlavaNextImageProcessorPil(**_clip_image_kwargs(32),
                                                                         image_grid_pinpoints=pins),
                              tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=MISTRAL_LLAVA_TEMPLATE)
    return _save(LlavaNextForConditionalGeneration(cfg).eval(), proc, out, seed)


def make_onevision(out, seed=0):
    import torch
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, Qwen2Config, SiglipVisionConfig)

    torch.manual_seed(seed)
    tok = tokenizer(QWEN_SPECIAL + ["<video>"], named={"video_token": "<video>"}, template=ONEVISION_TEMPLATE,
                    bos=False)
    pins = [[32, 32], [32, 64], [64, 32], [64, 64]]
    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**SMALL, image_size=32, patch_size=8),
        text_config=Qwen2Config(**_text_kw(tok)), image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", image_grid_pinpoints=pins)
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pins,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    return _save_parts(model, out, tok, ip, ONEVISION_TEMPLATE, "LlavaOnevisionProcessor", num_image_tokens=16,
                       vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")


def _qwen_tok():
    return tokenizer(QWEN_SPECIAL, named={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                          "vision_start_token": "<|vision_start|>",
                                          "vision_end_token": "<|vision_end|>"},
                     template=QWEN2VL_CHAT_TEMPLATE, bos=False)


def _qwen_ids(tok):
    i = dict(zip(QWEN_SPECIAL, _ids(tok, *QWEN_SPECIAL)))
    return dict(image_token_id=i["<|image_pad|>"], video_token_id=i["<|video_pad|>"],
                vision_start_token_id=i["<|vision_start|>"], vision_end_token_id=i["<|vision_end|>"])


def make_qwen2_5_vl(out, seed=0):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    tok = _qwen_tok()
    cfg = Qwen2_5_VLConfig(
        text_config=_text_kw(tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                   "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           fullatt_block_indexes=[1]),
        **_qwen_ids(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                  size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48})
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    return _save_parts(model, out, tok, ip, QWEN2VL_CHAT_TEMPLATE, "Qwen2_5_VLProcessor")


def make_qwen3_vl(out, seed=0):
    import torch
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    tok = _qwen_tok()
    cfg = Qwen3VLConfig(
        text_config=_text_kw(tok, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=144,
                           deepstack_visual_indexes=[0]),
        **_qwen_ids(tok))
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                  size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48})
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    return _save_parts(model, out, tok, ip, QWEN2VL_CHAT_TEMPLATE, "Qwen3VLProcessor")


def _bert_tokenizer():
    """A WordPiece BERT tokenizer (the Q-Former's: bert-base-uncased layout, [CLS] text [SEP])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(base_corpus(), trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials,
                                                                      show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", padding_side="right")


def make_instructblip(out, seed=0):
    import torch
    from transformers import (BlipImageProcessorPil, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor, InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig)

    torch.manual_seed(seed)
    tok = tokenizer(template=None)
    qtok = _bert_tokenizer()
    cfg = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(**SMALL, image_size=32, patch_size=8).to_dict(),
        qformer_config=InstructBlipQFormerConfig(vocab_size=len(qtok), **SMALL, encoder_hidden_size=32,
                                                 pad_token_id=qtok.pad_token_id).to_dict(),
        text_config=LlamaConfig(**_text_kw(tok)).to_dict(), num_query_tokens=4,
        image_token_index=tok.convert_tokens_to_ids("<image>"))
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32}, do_convert_rgb=True,
                               image_mean=[0.48145466, 0.4578275, 0.40821073],
                               image_std=[0.26862954, 0.26130258, 0.27577711])
    proc = InstructBlipProcessor(image_processor=ip, tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4)
    return _save(InstructBlipForConditionalGeneration(cfg).eval(), proc, out, seed)


def make_gemma3(out, seed=0):
    import torch
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)

    torch.manual_seed(seed)
    named = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tok = tokenizer(["<start_of_turn>", "<end_of_turn>"], named=named, template=GEMMA3_TEMPLATE)
    boi, eoi, img = _ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    cfg = Gemma3Config(
        text_config=Gemma3TextConfig(**_text_kw(tok, head_dim=16, sliding_window=64)),
        vision_config=SiglipVisionConfig(**SMALL, image_size=32, patch_size=8), mm_tokens_per_image=4,
        boi_token_index=boi, eoi_token_index=eoi, image_token_index=img)
    ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=4)
    return _save(Gemma3ForConditionalGeneration(cfg).eval(), proc, out, seed)


_IDEFICS_SPECIALS = ["<fake_token_around_image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]


def make_idefics3(out, seed=0, smol=False):
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor, Idefics3VisionConfig, LlamaConfig, SmolVLMConfig,
                              SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil, SmolVLMVisionConfig)

    torch.manual_seed(seed)
    named = {"fake_image_token": "<fake_token_around_image>", "end_of_utterance_token": "<end_of_utterance>",
             "global_image_token": "<global-img>"}
    tok = tokenizer(_IDEFICS_SPECIALS, named=named if smol else None, template=IDEFICS3_TEMPLATE)
    vis_cls, cfg_cls, model_cls, ip_cls = ((SmolVLMVisionConfig, SmolVLMConfig, SmolVLMForConditionalGeneration,
                                           SmolVLMImageProcessorPil) if smol else
                                           (Idefics3VisionConfig, Idefics3Config, Idefics3ForConditionalGeneration,
                                            Idefics3ImageProcessorPil))
    cfg = cfg_cls(vision_config=vis_cls(**SMALL, image_size=32, patch_size=8).to_dict(),
                  text_config=LlamaConfig(**_text_kw(tok)).to_dict(), scale_factor=2,
                  image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    ip = ip_cls(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True,
                image_mean=[0.5] * 3, image_std=[0.5] * 3)
    model = model_cls(cfg).eval()
    if smol:
        return _save_parts(model, out, tok, ip, IDEFICS3_TEMPLATE, "SmolVLMProcessor", image_seq_len=4)
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
    return _save(model, proc, out, seed)


def make_smolvlm(out, seed=0):
    return make_idefics3(out, seed, smol=True)


def make_internvl(out, seed=0):
    import torch
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration, Qwen2Config

    torch.manual_seed(seed)
    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>", "image_token": "<IMG_CONTEXT>"}
    tok = tokenizer(["<|im_start|>", "<|im_end|>"], named=named, template=INTERNVL_TEMPLATE, bos=False)
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=[32, 32], patch_size=[8, 8]),
        text_config=Qwen2Config(**_text_kw(tok)).to_dict(), downsample_ratio=0.5,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    ip = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1,
                                  max_patches=2, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    model = InternVLForConditionalGeneration(cfg).eval()
    return _save_parts(model, out, tok, ip, INTERNVL_TEMPLATE, "InternVLProcessor", image_seq_length=4)


def make_mistral3(out, seed=0):
    import torch
    from transformers import (Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig,
                              PixtralImageProcessorPil, PixtralVisionConfig)

    torch.manual_seed(seed)
    tok = tokenizer(["[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"], named={"image_token": "[IMG]"},
                    template=MISTRAL3_TEMPLATE)
    cfg = Mistral3Config(
        vision_config=PixtralVisionConfig(**SMALL, head_dim=8, image_size=32, patch_size=8).to_dict(),
        text_config=MistralConfig(**_text_kw(tok)).to_dict(), spatial_merge_size=2,
        image_token_index=tok.convert_tokens_to_ids("[IMG]"), vision_feature_layer=-1,
        multimodal_projector_bias=False, projector_hidden_act="gelu")
    ip = PixtralImageProcessorPil(size={"longest_edge": 32}, patch_size=8, image_mean=[0.48145466, 0.4578275, 0.40821073],
                                  image_std=[0.26862954, 0.26130258, 0.27577711])
    model = Mistral3ForConditionalGeneration(cfg).eval()
    return _save_parts(model, out, tok, ip, MISTRAL3_TEMPLATE, "PixtralProcessor", patch_size=8, spatial_merge_size=2,
                       image_token="[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")


#: family row name -> builder(out_dir) -> checkpoint dir
BUILDERS = {
    "llava": make_tiny_llava, "llava_next_vicuna": make_tiny_llava_next, "llava_next_mistral": make_llava_next_mistral,
    "llava_onevision": make_onevision, "qwen2_vl": make_tiny_qwen2vl, "qwen2_5_vl": make_qwen2_5_vl,
    "qwen3_vl": make_qwen3_vl, "instructblip": make_instructblip, "gemma3": make_gemma3, "idefics3": make_idefics3,
    "smolvlm": make_smolvlm, "internvl": make_internvl, "mistral3": make_mistral3,
}
