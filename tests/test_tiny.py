"""halbench.testing.tiny: offline tokenizer and tiny checkpoints that load through the standard Auto classes."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from halbench.testing import tiny  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer(["A zebra grazes beside the giraffe near the river bank."])


def test_tokenizer_special_tokens_and_roundtrip(tok):
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.convert_tokens_to_ids("<image>") == 4 and tok.image_token == "<image>"
    assert tok.padding_side == "left"
    assert 300 < len(tok) <= 1024
    assert len(tiny.build_tokenizer([], vocab_size=300)) == 300
    text = "Ünïcode cafés, a zebra & 3 giraffes!\n\ttabs"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    # "<image>" is one special token inside running text
    assert tok("USER: <image>\nhi", add_special_tokens=False)["input_ids"].count(4) == 1


def test_tokenizer_is_trained(tok):
    # words from the given texts and the built-in COCO corpus are merged, not byte-by-byte
    for word in (" giraffe", " zebra", " refrigerator", " image", " grazes"):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) <= 2, word
    assert len(tok(" qzxjvk", add_special_tokens=False)["input_ids"]) >= 4


def test_left_padding_batch(tok):
    enc = tok(["a", "a much longer sentence about a dog"], padding=True)
    assert enc["input_ids"][0][0] == tok.pad_token_id and enc["attention_mask"][0][0] == 0
    assert enc["attention_mask"][1][0] == 1


def test_chat_template_llava_style(tok):
    with_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a cat?"}]}]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    render = lambda m, **kw: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True, **kw)  # noqa: E731
    assert render(with_image) == "USER: <image>\nIs there a cat? ASSISTANT:"
    assert render(text_only) == "USER: Hello ASSISTANT:"
    system = [{"role": "system", "content": "Be brief."}] + [{"role": "user", "content": "Hi"}]
    assert render(system) == "Be brief. USER: Hi ASSISTANT:"
    turn = text_only + [{"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}]
    assert tok.apply_chat_template(turn, tokenize=False) == "USER: Hello ASSISTANT: Yes.</s>"


def test_qwen2vl_template():
    import jinja2

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    out = jinja2.Template(tiny.QWEN2VL_CHAT_TEMPLATE).render(messages=msgs, add_generation_prompt=True)
    assert out == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("make", [tiny.make_tiny_llava, tiny.make_tiny_llava_next, tiny.make_tiny_qwen2vl])
def test_checkpoint_loads_and_runs(make, tmp_path):
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from halbench.models.hf import load_processor

    out = make(tmp_path / "m", seed=3)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    assert 100_000 < (out / "model.safetensors").stat().st_size < 5_000_000
    cfg = json.loads((out / "config.json").read_text())
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    proc = load_processor(out, cfg["model_type"])
    if cfg["model_type"] in ("llava", "llava_next"):
        assert proc.num_additional_image_tokens == 1  # CLIP tower with a CLS token (transformers 5 pitfall)
        assert type(proc.image_processor).__name__.endswith("Pil")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a dog?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    enc = proc(text=[text], images=[Image.new("RGB", (48, 40), "red")], return_tensors="pt")
    with torch.no_grad():  # a wrong image-token count raises here ("Image features and image tokens do not match")
        logits = model(**enc).logits
    assert logits.shape[:2] == enc["input_ids"].shape and torch.isfinite(logits).all()


def test_seed_determines_weights(tmp_path):
    from safetensors.torch import load_file

    a = load_file(tiny.make_tiny_llava(tmp_path / "a", seed=0) / "model.safetensors")
    b = load_file(tiny.make_tiny_llava(tmp_path / "b", seed=0) / "model.safetensors")
    c = load_file(tiny.make_tiny_llava(tmp_path / "c", seed=1) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
