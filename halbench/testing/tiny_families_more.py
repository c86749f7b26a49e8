"""Tiny builders for InstructBLIP, Gemma3, Idefics3 / SmolVLM and Mistral3 / Pixtral.

Card (faithful vs shrunk) in halbench.testing.tiny_families. PixtralProcessor is torchvision-gated as a whole
in transformers 5, so the Mistral3/Pixtral processor parts are saved file by file.
"""

from __future__ import annotations

from pathlib import Path

from halbench.testing import tiny_templates as tpl
from halbench.testing.tiny_families import (CLIP_MEAN, CLIP_STD, HALF, LLAMA_FRONT, TINY_TEXT, TINY_VISION, _gen,
                                            _seed, _text_config)
from halbench.testing.tiny_tok import (family_tokenizer, ids, save_model, save_processor_parts,
                                       set_image_processor_type, set_tokenizer_class, wordpiece_tokenizer)


def make_tiny_instructblip(out_dir, seed: int = 0) -> Path:
    """Salesforce/instructblip-vicuna-7b in miniature. Tokenizer as published (special_tokens_map: bos, eos and
    unk are all "</s>", pad "[PAD]"; added_tokens.json: [PAD] 32000, <image> 32001, <video> 32002), Q-Former
    tokenizer = bert-base-uncased + [DEC]. generation_config ids as published (bos 0, eos 1, pad 32000).
    processor_config.json names InstructBlipProcessor (the hub's latest revision names InstructBlipVideoProcessor,
    whose video half needs torchvision; InstructBlipProcessor is transformers' class for model_type instructblip).
    """
    from transformers import (BlipImageProcessorPil, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor, LlamaConfig)

    _seed(seed)
    tok = family_tokenizer(front=LLAMA_FRONT, added=["[PAD]", "<image>", "<video>"], bos="</s>", eos="</s>",
                           pad="[PAD]", unk="</s>", add_bos=True, chat_template=None, padding_side="left",
                           style="metaspace")
    qtok = wordpiece_tokenizer()
    unk0, s1, pad_id, image_id = ids(tok, "<unk>", "<s>", "[PAD]", "<image>")
    text = LlamaConfig(**TINY_TEXT, vocab_size=len(tok), rms_norm_eps=1e-6, max_position_embeddings=2048,
                       bos_token_id=unk0, eos_token_id=s1, pad_token_id=pad_id, tie_word_embeddings=False)
    config = InstructBlipConfig(
        vision_config=dict(TINY_VISION, image_size=28, patch_size=14, qkv_bias=True),
        qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                            encoder_hidden_size=32, vocab_size=len(qtok), cross_attention_frequency=2,
                            pad_token_id=qtok.pad_token_id),
        text_config=text, num_query_tokens=32, image_token_index=image_id,
    )
    model = InstructBlipForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="instructblip", published="Salesforce/instructblip-vicuna-7b", seed=seed,
                     generation=dict(bos_token_id=unk0, eos_token_id=s1, pad_token_id=pad_id))
    ip = BlipImageProcessorPil(size={"height": 28, "width": 28}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                               do_convert_rgb=True, resample=3)
    InstructBlipProcessor(image_processor=ip, tokenizer=tok, qformer_tokenizer=qtok,
                          num_query_tokens=32).save_pretrained(out)
    set_image_processor_type(out, "BlipImageProcessor", "InstructBlipProcessor")
    set_tokenizer_class(out, "LlamaTokenizer")
    set_tokenizer_class(out / "qformer_tokenizer", "BertTokenizer")
    return out


def make_tiny_gemma3(out_dir, seed: int = 0) -> Path:
    """google/gemma-3-4b-it in miniature: SigLIP 56 px / patch 14 pooled to 4 soft tokens (published 896 px ->
    256), one sliding + one full attention layer (published 5:1 pattern), published rope (linear x8 global,
    10k local), query_pre_attn_scalar = head_dim as published."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)

    _seed(seed)
    # published ids: <pad> 0 <eos> 1 <bos> 2 <unk> 3 <mask> 4 [multimodal] 5 ... <start_of_turn> 105
    # <end_of_turn> 106 ... <start_of_image> 255999 <end_of_image> 256000 ... <image_soft_token> 262144
    front = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>"]
    tok = family_tokenizer(front=front, added=["<start_of_image>", "<end_of_image>", "<image_soft_token>"],
                           bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", add_bos=True, chat_template=tpl.GEMMA3,
                           named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                  "image_token": "<image_soft_token>"}, style="gemma")
    boi, eoi, soft, eot = ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<end_of_turn>")
    text = Gemma3TextConfig(
        **TINY_TEXT, vocab_size=len(tok), head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=131072,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    config = Gemma3Config(
        text_config=text, vision_config=SiglipVisionConfig(**TINY_VISION, image_size=56, patch_size=14,
                                                           vision_use_head=False),
        mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=soft,
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="gemma3", published="google/gemma-3-4b-it", seed=seed,
                     generation=_gen(tok, eos_token_id=[tok.eos_token_id, eot]))
    ip = Gemma3ImageProcessorPil(size={"height": 56, "width": 56}, image_mean=HALF, image_std=HALF, resample=2,
                                 do_pan_and_scan=False)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=tpl.GEMMA3, image_seq_length=4)
    proc.save_pretrained(out)
    set_image_processor_type(out, "Gemma3ImageProcessor", "Gemma3Processor")
    set_tokenizer_class(out, "GemmaTokenizer")
    return out


def _idefics3(out_dir, seed, *, tok, template, tile: int, scale: int, published: str, family: str,
              tokenizer_class: str) -> Path:
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor)

    _seed(seed)
    (image_id,) = ids(tok, "<image>")
    config = Idefics3Config(
        vision_config=dict(TINY_VISION, image_size=tile, patch_size=14), scale_factor=scale, image_token_id=image_id,
        text_config=_text_config("llama", tok, rms_norm_eps=1e-5).to_dict(), tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    eou = ids(tok, "<end_of_utterance>")[0]
    out = save_model(model, out_dir, family=family, published=published, seed=seed,
                     generation=_gen(tok, eos_token_id=[tok.eos_token_id, eou]))
    # published: size longest_edge = 4 tiles, max_image_size longest_edge = the vision tower's image_size
    ip = Idefics3ImageProcessorPil(do_image_splitting=True, max_image_size={"longest_edge": tile},
                                   size={"longest_edge": 4 * tile}, image_mean=HALF, image_std=HALF, resample=1,
                                   do_pad=True, do_convert_rgb=True)
    seq = ((tile // 14) ** 2) // (scale ** 2)
    Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=template).save_pretrained(out)
    set_image_processor_type(out, "Idefics3ImageProcessor", "Idefics3Processor")
    set_tokenizer_class(out, tokenizer_class)
    return out


_IDEFICS_ADDED = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", ("<global-img>", False)] + [
    (f"<row_{i}_col_{j}>", False) for i in range(1, 7) for j in range(1, 7)]


def make_tiny_idefics3(out_dir, seed: int = 0) -> Path:
    """HuggingFaceM4/Idefics3-8B-Llama3 in miniature: 28 px tiles (published 364) -> 1 token (published 169),
    scale factor 2, Llama-3 specials appended (<|begin_of_text|> 128000 ...), then the Idefics3 tokens."""
    llama3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"]
    tok = family_tokenizer(front=[], added=llama3 + _IDEFICS_ADDED, bos="<|begin_of_text|>", eos="<|end_of_text|>",
                           pad="<|reserved_special_token_0|>", unk=None, add_bos=True, chat_template=tpl.IDEFICS3,
                           named={"image_token": "<image>"})
    return _idefics3(out_dir, seed, tok=tok, template=tpl.IDEFICS3, tile=28, scale=2,
                     published="HuggingFaceM4/Idefics3-8B-Llama3", family="idefics3",
                     tokenizer_class="PreTrainedTokenizerFast")


def make_tiny_smolvlm(out_dir, seed: int = 0) -> Path:
    """HuggingFaceTB/SmolVLM-Instruct in miniature (model_type idefics3 as published): 42 px tiles (published
    384) -> 1 token (published 81), scale factor 3, SmolLM2 specials first (<|endoftext|> 0 <|im_start|> 1
    <|im_end|> 2), the Idefics3 tokens appended."""
    tok = family_tokenizer(front=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], added=_IDEFICS_ADDED,
                           bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>", unk="<|endoftext|>",
                           add_bos=False, chat_template=tpl.SMOLVLM, named={"image_token": "<image>"})
    return _idefics3(out_dir, seed, tok=tok, template=tpl.SMOLVLM, tile=42, scale=3,
                     published="HuggingFaceTB/SmolVLM-Instruct", family="smolvlm", tokenizer_class="GPT2Tokenizer")


#: Tekken control tokens, ids 0..19 as in the published tokenizers ([IMG] 10, [IMG_BREAK] 12, [IMG_END] 13).
TEKKEN_FRONT = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
                "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"]


def _tekken(template: str):
    return family_tokenizer(front=TEKKEN_FRONT, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True,
                            chat_template=template, named={"image_token": "[IMG]", "image_break_token": "[IMG_BREAK]",
                                                           "image_end_token": "[IMG_END]"})


def _pixtral_vision(image_size: int, patch: int) -> dict:
    # published: hidden 1024, head_dim 64, rope_theta 10000, hidden_act silu, 24 layers, 16 heads
    return dict(TINY_VISION, head_dim=8, image_size=image_size, patch_size=patch, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, model_type="pixtral")


def _pixtral_parts(out: Path, tok, template: str, *, patch: int, longest: int, merge: int) -> None:
    from transformers import PixtralImageProcessorPil

    ip = PixtralImageProcessorPil(patch_size={"height": patch, "width": patch}, size={"longest_edge": longest},
                                  image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True, resample=3)
    save_processor_parts(out, tokenizer=tok, image_processor=ip, chat_template=template,
                         image_processor_type="PixtralImageProcessor", processor_config={
                             "processor_class": "PixtralProcessor", "image_token": "[IMG]",
                             "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]",
                             "patch_size": patch, "spatial_merge_size": merge})
    set_tokenizer_class(out, "PreTrainedTokenizerFast")  # what transformers' Tekken converters write


def make_tiny_mistral3(out_dir, seed: int = 0) -> Path:
    """mistralai/Mistral-Small-3.1-24B-Instruct-2503 in miniature: Pixtral tower patch 14, longest edge 56 px
    (published 1540), patch merger 2, projector without bias, image_token_index 10 (same id as published)."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    _seed(seed)
    tok = _tekken(tpl.MISTRAL3)
    config = Mistral3Config(
        vision_config=_pixtral_vision(56, 14),
        text_config=_text_config("mistral", tok, head_dim=16, rope_theta=1e9, sliding_window=None,
                                 max_position_embeddings=131072, rms_norm_eps=1e-5).to_dict(),
        image_token_index=ids(tok, "[IMG]")[0], projector_hidden_act="gelu", vision_feature_layer=-1,
        multimodal_projector_bias=False, spatial_merge_size=2, tie_word_embeddings=False,
    )
    model = Mistral3ForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="mistral3", published="mistralai/Mistral-Small-3.1-24B-Instruct-2503",
                     seed=seed, generation=_gen(tok))
    _pixtral_parts(out, tok, tpl.MISTRAL3, patch=14, longest=56, merge=2)
    return out


def make_tiny_pixtral(out_dir, seed: int = 0) -> Path:
    """mistral-community/pixtral-12b in miniature: LlavaForConditionalGeneration with a Pixtral tower (patch 16,
    longest edge 64 px, published 1024), "full" features of the last layer, image_token_index 10."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    _seed(seed)
    tok = _tekken(tpl.PIXTRAL)
    config = LlavaConfig(
        vision_config=_pixtral_vision(64, 16),
        text_config=_text_config("mistral", tok, head_dim=16, rope_theta=1e9, sliding_window=None,
                                 max_position_embeddings=1024000, rms_norm_eps=1e-5).to_dict(),
        image_token_index=ids(tok, "[IMG]")[0], projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="full", tie_word_embeddings=False, image_seq_length=1,  # as published
    )
    model = LlavaForConditionalGeneration(config).eval()
    out = save_model(model, out_dir, family="pixtral", published="mistral-community/pixtral-12b", seed=seed,
                     generation=_gen(tok))
    _pixtral_parts(out, tok, tpl.PIXTRAL, patch=16, longest=64, merge=1)
    return out
