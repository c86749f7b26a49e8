"""What each published checkpoint declares on disk, for checking the tiny family builders against.

Values are copied from the named Hugging Face repos' config.json ("model_type", "architectures"),
processor_config.json / preprocessor_config.json ("processor_class", "image_processor_type") and tokenizer
files (the image placeholder the chat template emits). `source` says which file(s) and, where the name on disk
differs from the published one for a reason, why.
"""

from __future__ import annotations

#: config.json values (dotted paths) that the published checkpoints have and that shrinking does not change.
PUBLISHED_FIELDS: dict[str, dict] = {
    "llava": {"vision_feature_layer": -2, "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
              "vision_config.model_type": "clip_vision_model", "vision_config.patch_size": 14,
              "vision_config.hidden_act": "quick_gelu", "text_config.model_type": "llama",
              "tie_word_embeddings": False},
    "llava_next_vicuna": {"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                          "vision_config.patch_size": 14, "text_config.model_type": "llama"},
    "llava_next_mistral": {"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                           "text_config.model_type": "mistral", "text_config.sliding_window": None},
    "llava_onevision": {"vision_feature_layer": -1, "vision_feature_select_strategy": "full",
                        "vision_aspect_ratio": "anyres_max_9", "vision_config.model_type": "siglip_vision_model",
                        "vision_config.patch_size": 14, "text_config.model_type": "qwen2"},
    "qwen2_vl": {"vision_config.patch_size": 14, "vision_config.spatial_merge_size": 2,
                 "vision_config.temporal_patch_size": 2, "text_config.rope_parameters.rope_theta": 1e6},
    "qwen2_5_vl": {"vision_config.patch_size": 14, "vision_config.spatial_merge_size": 2,
                   "vision_config.hidden_act": "silu", "vision_config.tokens_per_second": 2},
    "qwen3_vl": {"vision_config.patch_size": 16, "vision_config.spatial_merge_size": 2,
                 "text_config.rope_parameters.mrope_interleaved": True, "text_config.rope_parameters.rope_theta": 5e6},
    "instructblip": {"num_query_tokens": 32, "qformer_config.model_type": "instructblip_qformer",
                     "vision_config.patch_size": 14, "text_config.model_type": "llama"},
    "gemma3": {"vision_config.model_type": "siglip_vision_model", "vision_config.patch_size": 14,
               "text_config.rope_parameters.full_attention.rope_type": "linear",
               "text_config.rope_parameters.full_attention.factor": 8.0},
    "idefics3": {"scale_factor": 2, "vision_config.patch_size": 14, "text_config.model_type": "llama"},
    "smolvlm": {"scale_factor": 3, "vision_config.patch_size": 14, "text_config.model_type": "llama"},
    "internvl": {"downsample_ratio": 0.5, "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
                 "projector_hidden_act": "gelu", "vision_config.patch_size": [14, 14],
                 "text_config.model_type": "qwen2"},
    "mistral3": {"image_token_index": 10, "spatial_merge_size": 2, "multimodal_projector_bias": False,
                 "vision_feature_layer": -1, "vision_config.model_type": "pixtral", "vision_config.patch_size": 14,
                 "text_config.model_type": "mistral"},
    "pixtral": {"image_token_index": 10, "vision_feature_layer": -1, "vision_feature_select_strategy": "full",
                "image_seq_length": 1, "vision_config.model_type": "pixtral", "vision_config.patch_size": 16,
                "text_config.model_type": "mistral"},
}

PUBLISHED: dict[str, dict] = {
    "llava": dict(
        tokenizer_class="LlamaTokenizer",
        repo="llava-hf/llava-1.5-7b-hf", model_type="llava", architectures=["LlavaForConditionalGeneration"],
        processor_class="LlavaProcessor", image_processor_type="CLIPImageProcessor", image_placeholder="<image>",
        source="config.json (image_token_index 32000, pad 32001, vision_feature_layer -2, 'default'), "
               "processor_config.json (patch_size 14, num_additional_image_tokens 1), chat_template.json",
    ),
    "llava_next_vicuna": dict(
        tokenizer_class="LlamaTokenizer",
        repo="llava-hf/llava-v1.6-vicuna-7b-hf", model_type="llava_next",
        architectures=["LlavaNextForConditionalGeneration"], processor_class="LlavaNextProcessor",
        image_processor_type="LlavaNextImageProcessor", image_placeholder="<image>",
        source="config.json (image_grid_pinpoints, use_image_newline_parameter, text pad_token_id 0)",
    ),
    "llava_next_mistral": dict(
        tokenizer_class="LlamaTokenizer",
        repo="llava-hf/llava-v1.6-mistral-7b-hf", model_type="llava_next",
        architectures=["LlavaNextForConditionalGeneration"], processor_class="LlavaNextProcessor",
        image_processor_type="LlavaNextImageProcessor", image_placeholder="<image>",
        source="config.json (text model_type mistral, rope_theta 1e6), added_tokens.json (<image> 32000, "
               "<pad> 32001), chat_template.json ([INST] ... [/INST])",
    ),
    "llava_onevision": dict(
        tokenizer_class="Qwen2Tokenizer",
        repo="llava-hf/llava-onevision-qwen2-7b-ov-hf", model_type="llava_onevision",
        architectures=["LlavaOnevisionForConditionalGeneration"], processor_class="LlavaOnevisionProcessor",
        image_processor_type="LlavaOnevisionImageProcessor", image_placeholder="<image>",
        source="config.json (image_token_index 151646, video 151647, 'full', layer -1, anyres_max_9, siglip)",
    ),
    "qwen2_vl": dict(
        tokenizer_class="Qwen2Tokenizer",
        repo="Qwen/Qwen2-VL-7B-Instruct", model_type="qwen2_vl", architectures=["Qwen2VLForConditionalGeneration"],
        processor_class="Qwen2VLProcessor", image_processor_type="Qwen2VLImageProcessor",
        image_placeholder="<|image_pad|>",
        source="config.json (image_token_id 151655, vision_start 151652, mrope_section [16, 24, 24]), "
               "preprocessor_config.json (min_pixels 3136, patch 14, merge 2, temporal 2)",
    ),
    "qwen2_5_vl": dict(
        tokenizer_class="Qwen2Tokenizer",
        repo="Qwen/Qwen2.5-VL-7B-Instruct", model_type="qwen2_5_vl",
        architectures=["Qwen2_5_VLForConditionalGeneration"], processor_class="Qwen2_5_VLProcessor",
        image_processor_type="Qwen2VLImageProcessor", image_placeholder="<|image_pad|>",
        source="config.json (window_size 112, fullatt_block_indexes [7, 15, 23, 31], hidden_act silu)",
    ),
    "qwen3_vl": dict(
        tokenizer_class="Qwen2Tokenizer",
        repo="Qwen/Qwen3-VL-8B-Instruct", model_type="qwen3_vl", architectures=["Qwen3VLForConditionalGeneration"],
        processor_class="Qwen3VLProcessor", image_processor_type="Qwen2VLImageProcessor",
        image_placeholder="<|image_pad|>",
        source="config.json (patch 16, deepstack_visual_indexes [8, 16, 24], mrope_interleaved); "
               "preprocessor_config.json names Qwen2VLImageProcessorFast (the transformers-4 name of the class "
               "transformers 5 calls Qwen2VLImageProcessor)",
    ),
    "instructblip": dict(
        tokenizer_class="LlamaTokenizer",
        repo="Salesforce/instructblip-vicuna-7b", model_type="instructblip",
        architectures=["InstructBlipForConditionalGeneration"], processor_class="InstructBlipProcessor",
        image_processor_type="BlipImageProcessor", image_placeholder=None,
        source="config.json (num_query_tokens 32, qformer vocab 30523), added_tokens.json, special_tokens_map.json, "
               "generation_config.json (bos 0, eos 1, pad 32000); processor_config.json's latest revision names "
               "InstructBlipVideoProcessor, which needs torchvision",
    ),
    "gemma3": dict(
        tokenizer_class="GemmaTokenizer",
        repo="google/gemma-3-4b-it", model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"],
        processor_class="Gemma3Processor", image_processor_type="Gemma3ImageProcessor",
        image_placeholder="<start_of_image>",
        source="config.json (boi 255999, eoi 256000, image 262144, mm_tokens_per_image 256), "
               "processor_config.json (image_seq_length 256), chat_template.json",
    ),
    "idefics3": dict(
        tokenizer_class="PreTrainedTokenizerFast",
        repo="HuggingFaceM4/Idefics3-8B-Llama3", model_type="idefics3",
        architectures=["Idefics3ForConditionalGeneration"], processor_class="Idefics3Processor",
        image_processor_type="Idefics3ImageProcessor", image_placeholder="<image>",
        source="config.json (image_token_id 128257, scale_factor 2), processor_config.json (image_seq_len 169), "
               "preprocessor_config.json (max_image_size 364, size 1456)",
    ),
    "smolvlm": dict(
        tokenizer_class="GPT2Tokenizer",
        repo="HuggingFaceTB/SmolVLM-Instruct", model_type="idefics3",
        architectures=["Idefics3ForConditionalGeneration"], processor_class="Idefics3Processor",
        image_processor_type="Idefics3ImageProcessor", image_placeholder="<image>",
        source="config.json (scale_factor 3), processor_config.json (image_seq_len 81)",
    ),
    "internvl": dict(
        tokenizer_class="Qwen2Tokenizer",
        repo="OpenGVLab/InternVL3-1B-hf", model_type="internvl", architectures=["InternVLForConditionalGeneration"],
        processor_class="InternVLProcessor", image_processor_type="GotOcr2ImageProcessor",
        image_placeholder="<IMG_CONTEXT>",
        source="config.json (image_token_id 151667, downsample_ratio 0.5, image_seq_length 256); "
               "preprocessor_config.json names GotOcr2ImageProcessorFast (transformers-4 name)",
    ),
    "mistral3": dict(
        tokenizer_class="PreTrainedTokenizerFast",
        repo="mistralai/Mistral-Small-3.1-24B-Instruct-2503", model_type="mistral3",
        architectures=["Mistral3ForConditionalGeneration"], processor_class="PixtralProcessor",
        image_processor_type="PixtralImageProcessor", image_placeholder="[IMG]",
        source="config.json (image_token_index 10, spatial_merge_size 2, multimodal_projector_bias false), "
               "processor_config.json (patch_size 14, spatial_merge_size 2)",
    ),
    "pixtral": dict(
        tokenizer_class="PreTrainedTokenizerFast",
        repo="mistral-community/pixtral-12b", model_type="llava", architectures=["LlavaForConditionalGeneration"],
        processor_class="PixtralProcessor", image_processor_type="PixtralImageProcessor", image_placeholder="[IMG]",
        source="config.json (vision model_type pixtral, image_token_index 10, 'full', layer -1), "
               "processor_config.json (patch_size 16)",
    ),
}
