"""The tiny family checkpoints load in plain transformers, declare what the published ones declare, and run."""

from __future__ import annotations

import json
import os

import pytest

from halbench.testing.tiny_families import TORCHVISION_PROCESSORS, build_family, family_names
from halbench.testing.tiny_published import PUBLISHED, PUBLISHED_FIELDS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FAMILIES = family_names()


def _has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_families")


def _json(path):
    return json.loads(path.read_text())


def _image_processor_type(d) -> str:
    proc = _json(d / "processor_config.json") if (d / "processor_config.json").is_file() else {}
    if isinstance(proc.get("image_processor"), dict):
        return proc["image_processor"]["image_processor_type"]
    return _json(d / "preprocessor_config.json")["image_processor_type"]


def _no_video_processor(d):
    """The published processor class minus its torchvision-only video half (what halbench's adapters do)."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    fields = _json(d / "processor_config.json")
    base = getattr(transformers, fields.pop("processor_class"))

    class NoVideo(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kw)

    template = (d / "chat_template.jinja").read_text()
    return NoVideo(AutoImageProcessor.from_pretrained(d), AutoTokenizer.from_pretrained(d), template, **fields)


def _pixtral_inputs(d, text, image):
    """PixtralProcessor's expansion (rows of [IMG] ended by [IMG_BREAK], the last by [IMG_END]) by hand: the
    class is torchvision-gated in transformers 5."""
    from transformers import AutoImageProcessor, AutoTokenizer

    fields = _json(d / "processor_config.json")
    step = fields["patch_size"] * fields["spatial_merge_size"]
    pix = AutoImageProcessor.from_pretrained(d)(images=[image], return_tensors="pt")
    h, w = (int(v) for v in pix["image_sizes"][0])
    rows = [fields["image_token"]] * (w // step) + [fields["image_break_token"]]
    seq = (rows * (h // step))[:-1] + [fields["image_end_token"]]
    tok = AutoTokenizer.from_pretrained(d)
    enc = tok([text.replace(fields["image_token"], "".join(seq), 1)], return_tensors="pt", add_special_tokens=False)
    return {**enc, **pix}


def _inputs(name, d, image):
    from transformers import AutoProcessor

    if PUBLISHED[name]["processor_class"] not in TORCHVISION_PROCESSORS or _has_torchvision():
        proc = AutoProcessor.from_pretrained(d)
    elif name in ("mistral3", "pixtral"):
        from transformers import AutoTokenizer

        text = AutoTokenizer.from_pretrained(d).apply_chat_template(_messages(), add_generation_prompt=True,
                                                                    tokenize=False)
        return text, _pixtral_inputs(d, text, image)
    else:
        with pytest.raises((ImportError, ValueError), match="orchvision"):
            AutoProcessor.from_pretrained(d)
        proc = _no_video_processor(d)
    if proc.chat_template is None:  # InstructBLIP: plain prompt, the processor prepends the query tokens
        text = "Is there a dog in the image?"
    else:
        text = proc.apply_chat_template(_messages(), add_generation_prompt=True)
    return text, proc(images=[image], text=[text], return_tensors="pt")


def _messages():
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a dog in the image?"}]}]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_declares_published_classes(cache, name):
    d = build_family(name, cache)
    pub, cfg = PUBLISHED[name], _json(d / "config.json")
    assert cfg["model_type"] == pub["model_type"]
    assert cfg["architectures"] == pub["architectures"]
    proc = _json(d / "processor_config.json")
    assert proc["processor_class"] == pub["processor_class"]
    assert _image_processor_type(d) == pub["image_processor_type"]
    assert "Pil" not in (d / "processor_config.json").read_text()


def _dotted(cfg: dict, path: str):
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("name", FAMILIES)
def test_family_keeps_published_config_values(cache, name):
    d = build_family(name, cache)
    cfg = _json(d / "config.json")
    got = {path: _dotted(cfg, path) for path in PUBLISHED_FIELDS[name]}
    assert got == PUBLISHED_FIELDS[name]
    # the image placeholder the config points at is the tokenizer's placeholder token
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    image_id = cfg.get("image_token_index", cfg.get("image_token_id"))
    token = {"gemma3": "<image_soft_token>", "instructblip": "<image>"}.get(name, PUBLISHED[name]["image_placeholder"])
    if name in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        token = "<|image_pad|>"
    assert tok.convert_ids_to_tokens(image_id) == token


@pytest.mark.parametrize("name", FAMILIES)
def test_family_loads_and_runs_one_image(cache, name):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    d = build_family(name, cache)
    model = AutoModelForImageTextToText.from_pretrained(d).eval()
    assert type(model).__name__ == PUBLISHED[name]["architectures"][0]
    # 64x48: at least 2 merged tokens in every family (Mistral3 squeezes a 1-token image to a vector and fails)
    text, inputs = _inputs(name, d, Image.new("RGB", (64, 48), (180, 40, 20)))
    if PUBLISHED[name]["image_placeholder"]:
        assert PUBLISHED[name]["image_placeholder"] in text
    with torch.no_grad():
        out = model(**inputs)
    vocab = model.config.get_text_config().vocab_size
    assert out.logits.shape[:2] == inputs["input_ids"].shape and out.logits.shape[-1] == vocab
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_published_tokenizer_class_loads_the_same_tokenizer(cache, name):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    d = build_family(name, cache)
    assert _json(d / "tokenizer_config.json")["tokenizer_class"] == PUBLISHED[name]["tokenizer_class"]
    text = "USER: Is there a dog in the image?\nASSISTANT: Yes, there is a dog. caf\u00e9 \u732b"
    raw = Tokenizer.from_file(str(d / "tokenizer.json")).encode(text).ids
    tok = AutoTokenizer.from_pretrained(d)
    assert tok(text).input_ids == raw
    assert tok.decode(raw, skip_special_tokens=True).strip() == text


def test_every_family_has_published_values():
    assert set(FAMILIES) == set(PUBLISHED) == set(PUBLISHED_FIELDS)


def test_build_family_caches_per_process(cache):
    a = build_family("llava", cache)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_family("llava", cache) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(KeyError, match="no tiny builder"):
        build_family("not-a-family", cache)


@pytest.mark.parametrize("name,expected", [
    # published ids that are the same at any vocabulary size
    ("llava", {"<unk>": 0, "<s>": 1, "</s>": 2}),
    ("gemma3", {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 6, "<end_of_turn>": 7}),
    ("mistral3", {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4, "[IMG]": 10, "<pad>": 11,
                  "[IMG_BREAK]": 12, "[IMG_END]": 13}),
    ("pixtral", {"[IMG]": 10, "[IMG_BREAK]": 12, "[IMG_END]": 13}),
])
def test_control_token_ids(cache, name, expected):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_family(name, cache))
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected


@pytest.mark.parametrize("name,tail", [
    # tokens the published checkpoints append after the base vocabulary, in the published order
    ("llava", ["<image>", "<pad>"]),
    ("qwen2_vl", ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]),
    ("instructblip", ["[PAD]", "<image>", "<video>"]),
    ("gemma3", ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]),
])
def test_appended_tokens_keep_published_order(cache, name, tail):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_family(name, cache))
    n = len(tok)
    assert [tok.convert_ids_to_tokens(i) for i in range(n - len(tail), n)] == tail
