"""HFModel on tiny random-weight LLaVA-1.5 / LLaVA-NeXT / Qwen2-VL checkpoints (built once per session)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from halbench.errors import HalbenchError, ModelLoadError  # noqa: E402
from halbench.models import load_model  # noqa: E402
from halbench.models.hf import HFModel, dir_fingerprint, gather_logprobs  # noqa: E402
from halbench.schema import GenerationSettings, Request  # noqa: E402
from halbench.testing import tiny  # noqa: E402


ARCHS = {"llava": tiny.make_tiny_llava, "llava_next": tiny.make_tiny_llava_next, "qwen2vl": tiny.make_tiny_qwen2vl}
PROMPTS = [
    "Is there a dog in the image?",
    "Describe this image in detail, naming every object you can see and where it is.",
    "cat",
    "Is there a person in the image? Please answer yes or no.",
]
SIZES = [(40, 40), (64, 32), (30, 70), (50, 50)]  # different sizes -> different LLaVA-NeXT/Qwen2-VL token counts


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def images(tiny_root) -> list[str]:
    rng = np.random.default_rng(0)
    from PIL import Image

    paths = []
    for i, (w, h) in enumerate(SIZES):
        p = tiny_root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="session")
def tiny_dirs(tiny_root) -> dict[str, Path]:
    return {name: make(tiny_root / name, seed=0) for name, make in ARCHS.items()}


@pytest.fixture(scope="session")
def models(tiny_dirs) -> dict[str, HFModel]:
    return {name: HFModel(d, batch_size=8) for name, d in tiny_dirs.items()}


@pytest.fixture
def model(request, models):
    m = models[request.param]
    yield m
    m.batch_size, m.seed = 8, 0


def _requests(images, n=8, **gen) -> list[Request]:
    return [Request(id=f"r{i}", prompt=PROMPTS[i % 4] + " x" * i, image=images[i % 4],
                    generation=GenerationSettings(max_new_tokens=10, **gen)) for i in range(n)]


# -- batching parity ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(ARCHS), indirect=True)
def test_greedy_batch8_equals_batch1(model, images):
    reqs = _requests(images)
    model.batch_size = 8
    batched = model.generate(reqs)
    model.batch_size = 1
    single = model.generate(reqs)
    assert all(r.ok for r in batched + single), [r.error for r in batched + single]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.n_generated_tokens for r in batched] == [r.n_generated_tokens for r in single]
    # the batch really was padded (prompts of different lengths) and the outputs are not all the same text
    assert len({r.usage["prompt_tokens"] for r in batched}) > 1
    assert len({r.text for r in batched}) > 1
    assert all(0 < r.n_generated_tokens <= 10 for r in batched)


@pytest.mark.parametrize("model", list(ARCHS), indirect=True)
def test_loglikelihood_batch_parity(model, images):
    reqs = [Request(id=f"l{i}", prompt=PROMPTS[i % 4], image=images[i % 4], continuation="a dog" * (i + 1))
            for i in range(6)]
    model.batch_size = 8
    batched = model.loglikelihood(reqs)
    model.batch_size = 1
    single = model.loglikelihood(reqs)
    for b, s, r in zip(batched, single, reqs):
        assert b.ok and s.ok
        assert b.tokens == s.tokens
        assert len(b.token_logprobs) == len(model.tokenizer(" " * (model.model_type != "qwen2_vl") + r.continuation,
                                                            add_special_tokens=False)["input_ids"])
        assert np.allclose(b.token_logprobs, s.token_logprobs, atol=1e-5, rtol=0)
        assert all(lp <= 0 for lp in b.token_logprobs)


@pytest.mark.parametrize("model", ["llava", "qwen2vl"], indirect=True)
def test_loglikelihood_matches_greedy_choice(model, images):
    """The greedy first token is the argmax, so its log-prob beats any other single-token continuation's."""
    req = Request(id="g", prompt=PROMPTS[0], image=images[0], generation=GenerationSettings(max_new_tokens=1))
    inputs = model.build_inputs([req])
    inputs.pop("labels")
    with torch.no_grad():
        logp = torch.log_softmax(model.model(**inputs).logits[0, -1], -1)
    best = int(logp.argmax())
    assert model.generate([req])[0].n_generated_tokens == 1
    out = model.model.generate(**{k: v for k, v in inputs.items() if k != "position_ids"}, max_new_tokens=1,
                               do_sample=False)
    assert int(out[0, -1]) == best


def test_build_inputs_labels_mark_continuation(models, images):
    m = models["llava"]
    reqs = [Request(id="a", prompt="Is there a cat?", image=images[0]), Request(id="b", prompt="Describe it.")]
    inp = m.build_inputs(reqs, continuations=["Yes, a cat.", "A dog on a couch."], append_eos=True)
    assert set(inp) >= {"input_ids", "attention_mask", "pixel_values", "labels", "position_ids"}
    for row, text in enumerate(["Yes, a cat.", "A dog on a couch."]):
        ids = inp["input_ids"][row][inp["labels"][row] != -100]
        assert m.tokenizer.decode(ids) == " " + text + "</s>"
    assert bool((inp["attention_mask"][:, -1] == 1).all())  # left padded
    logps, mask = gather_logprobs(m.model(**{k: v for k, v in inp.items() if k != "labels"}).logits, inp["labels"])
    assert mask.sum().item() == (inp["labels"] != -100).sum().item() and logps.shape == mask.shape


def test_qwen2vl_inputs_have_grid(models, images):
    inp = models["qwen2vl"].build_inputs([Request(id="a", prompt="hi", image=images[1])], continuations=["yes"])
    assert "image_grid_thw" in inp and "position_ids" not in inp  # M-RoPE positions come from the model


def test_sampling_is_seeded(models, images):
    m = models["llava"]
    reqs = _requests(images, n=4, do_sample=True, temperature=1.0)
    first, again = m.generate(reqs), m.generate(reqs)
    assert [r.text for r in first] == [r.text for r in again]
    m.seed = 1
    try:
        other = m.generate(reqs)
    finally:
        m.seed = 0
    assert [r.text for r in other] != [r.text for r in first]
    greedy = m.generate(_requests(images, n=4))
    assert [r.text for r in greedy] != [r.text for r in first]


def test_text_only_and_missing_image(models, images, tmp_path):
    m = models["llava"]
    missing = str(tmp_path / "nope.jpg")
    reqs = [Request(id="a", prompt="Is there a cat?", image=images[0]), Request(id="b", prompt="No image here."),
            Request(id="c", prompt="Is there a cat?", image=missing)]
    out = m.generate(reqs)
    assert out[0].ok and out[1].ok
    assert out[2].error and missing in out[2].error and out[2].text == ""
    alone = m.generate(reqs[:1])
    assert alone[0].text == out[0].text
    with pytest.raises(HalbenchError, match="nope.jpg"):
        m.build_inputs(reqs)


def test_decode_counts_eos_not_padding(models):
    m = models["llava"]
    eos, pad = m.tokenizer.eos_token_id, m.tokenizer.pad_token_id
    ids = m.tokenizer(" a dog", add_special_tokens=False)["input_ids"]
    r = m._decode(ids + [eos, pad, pad], prompt_tokens=7)
    assert (r.text, r.n_generated_tokens, r.usage) == ("a dog", len(ids) + 1, {"prompt_tokens": 7,
                                                                                "completion_tokens": len(ids) + 1})
    assert m._decode(ids, 7).n_generated_tokens == len(ids)


def test_plain_template_fallback(models, images):
    m = models["llava"]
    saved = m.processor.chat_template
    m.processor.chat_template, m.tokenizer.chat_template = None, None
    try:
        r = Request(id="a", prompt="Is there a cat?", image=images[0], system="Be brief.")
        assert m.render_prompt(r) == "Be brief. USER: <image>\nIs there a cat? ASSISTANT:"
    finally:
        m.processor.chat_template = m.tokenizer.chat_template = saved
    assert m.render_prompt(Request(id="b", prompt="hi")) == "USER: hi ASSISTANT:"


# -- loading errors and fingerprints --------------------------------------------------------------------------
def test_load_errors(tmp_path, tiny_dirs):
    with pytest.raises(ModelLoadError, match="not found") as e:
        HFModel(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(e.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ModelLoadError, match=r"no config.json.*notes.txt"):
        HFModel(tmp_path / "empty")

    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(text_only)
    with pytest.raises(ModelLoadError, match=r"'llama' model \(LlamaForCausalLM\), not a vision-language"):
        HFModel(text_only)

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_dirs["llava"], pickled)
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="allow_pickle"):
        HFModel(pickled)


def test_fingerprint_tracks_weights(tmp_path, tiny_dirs, monkeypatch):
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dirs["llava"], copy)
    fp = dir_fingerprint(copy)
    assert fp == dir_fingerprint(tiny_dirs["llava"]) and len(fp) == 16
    memo = json.loads((tmp_path / "cache" / "file_hashes.json").read_text())
    assert any(k.endswith("|" + str((copy / "model.safetensors").stat().st_mtime_ns)) for k in memo)

    from safetensors.torch import load_file, save_file

    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert dir_fingerprint(copy) != fp


def test_load_model_specs(tiny_dirs, models):
    d = tiny_dirs["llava"]
    for spec in (str(d), f"hf:{d}"):
        m = load_model(spec, batch_size=2)
        assert isinstance(m, HFModel) and m.batch_size == 2
        assert m.fingerprint() == models["llava"].fingerprint()
    assert m.capabilities >= {"generate", "logprobs", "image"}
    assert m.describe()["backend"] == "hf"


def test_load_model_default_world(tiny_dirs, tmp_path, monkeypatch):
    import types

    import halbench.world
    from halbench.errors import NotAvailableError

    monkeypatch.setattr(halbench.world, "default_world", lambda: types.SimpleNamespace(vlm_dir=tiny_dirs["llava"]),
                        raising=False)
    assert load_model(None).path == tiny_dirs["llava"]
    monkeypatch.setattr(halbench.world, "default_world", lambda: types.SimpleNamespace(vlm_dir=tmp_path / "gone"))
    with pytest.raises(NotAvailableError, match="gone"):
        load_model(None)
    with pytest.raises(HalbenchError, match="unknown backend 'nosuch'"):
        load_model("nosuch:thing")
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        HFModel(tiny_dirs["llava"], dtype="float33")
