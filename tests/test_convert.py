"""`halbench convert` and `--model ORIGINAL_LLAVA_DIR`: the original haotian-liu/LLaVA layout -> llava-hf.

The reference is a manual assembly of the ORIGINAL checkpoint's weights the way LLaVA's own code runs them
(CLIP hidden_states[-2] minus CLS -> mm_projector.0 -> GELU -> mm_projector.2, spliced into the Llama input
embeddings at the image position), with no llava-hf modelling code involved. The text ids are the converted
processor's: with a SentencePiece tokenizer the original `tokenizer_image_token` tokenizes the text after
<image> as a new chunk (one extra "▁" piece), a known llava-hf difference the conversion inherits.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from halbench.cli import main
from halbench.testing.tiny_llava_original import make_tiny_clip, make_tiny_original_llava

PROMPT = "USER: <image>\nIs there a dog in the image? ASSISTANT:"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("orig")
    return make_tiny_original_llava(root / "llava-v1.5-tiny"), make_tiny_clip(root / "clip")


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    src, clip = tiny
    out = tmp_path_factory.mktemp("conv") / "hf"
    r = CliRunner().invoke(main, ["convert", str(src), str(out), "--vision-tower", str(clip)])
    assert r.exit_code == 0, r.output
    return out


def _expand2square(img, mean):
    """LLaVA's expand2square (llava/mm_utils.py): pad to a square with the mean colour, image centred."""
    from PIL import Image

    w, h = img.size
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), tuple(int(x * 255) for x in mean))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def _manual_logits(src, clip_dir, pixel_values, text_ids, image_mask):
    """The original checkpoint run by hand: Llama embeddings of the text ids, the image features (CLIP
    hidden_states[-2] minus CLS -> mm_projector.0 -> GELU -> mm_projector.2) spliced in where the image goes."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    cfg = json.loads((src / "config.json").read_text())
    sd = load_file(str(src / "model.safetensors"))
    lm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if not k.startswith("mm_")})).eval()
    lm.load_state_dict({k: v for k, v in sd.items() if "mm_projector" not in k}, strict=True)
    tower = CLIPVisionModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        feats = tower(pixel_values, output_hidden_states=True).hidden_states[cfg["mm_vision_select_layer"]][:, 1:]
        h = feats @ sd["model.mm_projector.0.weight"].T + sd["model.mm_projector.0.bias"]
        feats = torch.nn.functional.gelu(h) @ sd["model.mm_projector.2.weight"].T + sd["model.mm_projector.2.bias"]
        embeds = lm.get_input_embeddings()(text_ids.masked_fill(image_mask, 0))
        embeds[image_mask] = feats.reshape(-1, feats.shape[-1])
        return lm(inputs_embeds=embeds).logits


def test_converted_loads_in_plain_transformers_and_matches_manual_assembly(tiny, converted):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    src, clip = tiny
    model, info = AutoModelForImageTextToText.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    proc = AutoProcessor.from_pretrained(converted)
    assert type(model).__name__ == "LlavaForConditionalGeneration" and type(proc).__name__ == "LlavaProcessor"
    cfg = json.loads((converted / "config.json").read_text())
    assert cfg["model_type"] == "llava" and cfg["vision_feature_layer"] == -2
    assert cfg["vision_feature_select_strategy"] == "default" and cfg["text_config"]["vocab_size"] % 64 == 0
    rendered = proc.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "Is there a dog in the image?"}]}], add_generation_prompt=True)
    assert rendered == PROMPT
    inputs = proc(images=[Image.new("RGB", (40, 24), (30, 160, 90))], text=[PROMPT], return_tensors="pt")
    with torch.no_grad():
        got = model.eval()(**inputs).logits
    mask = inputs["input_ids"] == cfg["image_token_index"]
    assert int(mask.sum()) == 4  # (28 / 14) ** 2 patches, CLS dropped ("default")
    want = _manual_logits(src, clip, inputs["pixel_values"], inputs["input_ids"], mask)
    torch.testing.assert_close(got[..., : want.shape[-1]], want, atol=1e-5, rtol=1e-5)


def test_image_processor_pads_like_expand2square(tiny, converted):
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoProcessor

    _, clip = tiny
    img = Image.new("RGB", (50, 20), (200, 30, 30))
    ours = AutoProcessor.from_pretrained(converted).image_processor(images=[img], return_tensors="pt")
    clip_ip = AutoImageProcessor.from_pretrained(clip)
    ref = clip_ip(images=[_expand2square(img, clip_ip.image_mean)], return_tensors="pt")
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"])


def test_missing_vision_tower_is_one_clear_error(tiny, tmp_path, monkeypatch):
    src, _ = tiny
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["convert", str(src), str(out)])
    assert r.exit_code == 2, r.output
    assert "openai/clip-vit-large-patch14-336" in r.output and "--vision-tower" in r.output
    assert "Traceback" not in r.output and not out.exists()


@pytest.mark.parametrize("field,value,words", [
    ("mm_projector_type", "linear", "mm_projector_type"),
    ("mm_patch_merge_type", "spatial_unpad", "anyres"),
    ("mm_use_im_start_end", True, "mm_use_im_start_end"),
])
def test_unsupported_variants_refused_before_writing(tiny, tmp_path, field, value, words):
    _, clip = tiny
    src = make_tiny_original_llava(tmp_path / "src", **{field: value})
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["convert", str(src), str(out), "--vision-tower", str(clip)])
    assert r.exit_code == 2 and words in r.output and not out.exists()


def test_existing_output_needs_overwrite(tiny, converted):
    src, clip = tiny
    r = CliRunner().invoke(main, ["convert", str(src), str(converted), "--vision-tower", str(clip)])
    assert r.exit_code == 2 and "--overwrite" in r.output


def _converted_tensors(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_pytorch_bin_checkpoint_converts_to_the_same_weights(tiny, converted, tmp_path):
    import torch

    _, clip = tiny
    src = make_tiny_original_llava(tmp_path / "bin-src", weights="bin")  # same seed -> same weights, .bin file
    out = tmp_path / "bin-out"
    assert CliRunner().invoke(main, ["convert", str(src), str(out), "--vision-tower", str(clip)]).exit_code == 0
    a, b = _converted_tensors(out), _converted_tensors(converted)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_tower_tuned_inside_the_checkpoint_wins_over_the_stock_one(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file

    _, clip = tiny
    src = make_tiny_original_llava(tmp_path / "tuned", tuned_tower=clip)
    out = tmp_path / "tuned-out"
    assert CliRunner().invoke(main, ["convert", str(src), str(out), "--vision-tower", str(clip)]).exit_code == 0
    got = _converted_tensors(out)
    stock = load_file(str(clip / "model.safetensors"))
    key = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(got["vision_tower." + key], stock[key] + 0.01)


def test_eval_converts_on_the_fly_into_the_cache(tiny, converted, tmp_path, monkeypatch):
    from halbench.runs import read_records
    from halbench.world import default_world

    src, clip = tiny
    local = make_tiny_original_llava(tmp_path / "orig-local", mm_vision_tower=str(clip))  # same seed -> same weights
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    world = str(default_world().root)
    runs = {}
    for name, model in (("fly", local), ("explicit", converted)):
        out = tmp_path / name
        r = CliRunner().invoke(main, ["eval", "--model", str(model), "--world", world, "--tasks", "pope",
                                      "--limit", "3", "--batch-size", "3", "--output-dir", str(out)])
        assert r.exit_code == 0, r.output
        runs[name] = [rec["response"] for rec in read_records(out / "samples" / "pope.jsonl")]
    assert runs["fly"] == runs["explicit"] and len(runs["fly"]) == 3
    cached = list((tmp_path / "cache" / "converted").iterdir())
    assert len(cached) == 1 and (cached[0] / "CONVERTED_FROM.json").is_file()
