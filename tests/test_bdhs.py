"""BDHS: image-attention masking, guidance plans, the attempt/filter loop, outputs, CLI, and bdhs-dpo."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from halbench.errors import NotAvailableError
from halbench.schema import Request
from halbench.training import bdhs
from halbench.training.data import PreferenceRow
from halbench.training.image_mask import generate_masked, keep_mask, masked_inputs

from .test_training_fixtures import _private_cache, cfg_kwargs, pairs_file, tiny_llava  # noqa: F401


@pytest.fixture(scope="module")
def hf(tiny_llava):  # noqa: F811
    from halbench.models.hf import HFModel

    return HFModel(tiny_llava)


def _inputs(hf, pairs_file):  # noqa: F811
    folder = pairs_file.parent
    reqs = [Request(id="a", prompt="Describe this image.", image=str(folder / "img0.png")),
            Request(id="b", prompt="Is there a dog in the image?", image=str(folder / "img1.png"))]
    inputs = hf.build_inputs(reqs, [None, None])
    inputs.pop("labels")
    return inputs


def test_masked_image_attention_makes_outputs_independent_of_pixels(hf, pairs_file):  # noqa: F811
    inputs = _inputs(hf, pairs_file)
    other = {**inputs, "pixel_values": torch.randn_like(inputs["pixel_values"])}
    with torch.no_grad():
        a = hf.model(**masked_inputs(inputs, hf.model, 0.0)).logits
        b = hf.model(**masked_inputs(other, hf.model, 0.0)).logits
        c = hf.model(**masked_inputs(other, hf.model, 1.0)).logits
        d = hf.model(**inputs).logits
    text = (inputs["input_ids"] != hf.model.config.image_token_index) & inputs["attention_mask"].bool()
    assert torch.equal(a[text], b[text])  # no text position reads the image
    assert not torch.allclose(c, d, atol=1e-4)  # sanity: unmasked outputs do depend on the pixels
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=hf.tokenizer.pad_token_id)
    plain = hf.model.generate(**{k: v for k, v in inputs.items() if k != "position_ids"}, **kw)
    assert torch.equal(generate_masked(hf.model, inputs, 1.0, **kw), plain[:, inputs["input_ids"].shape[1]:])
    assert torch.equal(generate_masked(hf.model, inputs, 0.0, **kw), generate_masked(hf.model, other, 0.0, **kw))


def test_keep_mask_keeps_about_one_percent_resampled():
    is_image = torch.zeros(2, 700, dtype=torch.bool)
    is_image[:, 50:626] = True  # 576 image tokens, as LLaVA-1.5
    g = torch.Generator().manual_seed(0)
    k1, k2 = keep_mask(is_image, 0.01, g), keep_mask(is_image, 0.01, g)
    assert k1.sum(1).tolist() == [6, 6] and not torch.equal(k1, k2) and not (k1 & ~is_image).any()
    small = torch.zeros(1, 20, dtype=torch.bool)
    small[0, 2:18] = True
    assert keep_mask(small, 0.01).sum() == 1 and keep_mask(small, 0.0).sum() == 0


def test_models_without_image_positions_are_refused():
    from halbench.training.image_mask import check_supported

    # M-RoPE families are supported now (tests/test_families.py); a config with no image token is refused
    with pytest.raises(NotAvailableError, match="no image token id"):
        check_supported(SimpleNamespace(config=SimpleNamespace(model_type="some_vlm")))


def test_guidance_plans_and_yes_no_flip():
    rng = np.random.default_rng(0)
    answer = "The image shows a dog and a cat. There is also a red car."
    for _ in range(20):
        prefixes, flipped = bdhs.plan_prefixes(answer, rng, 0.5)
        assert not flipped and len(prefixes) == 2
        for p, s in zip(prefixes, bdhs.split_sentences(answer)):
            assert s.startswith(p) and len(p.split()) < len(s.split())
    assert bdhs.flip_yes_no("Yes,") == "No," and bdhs.flip_yes_no("no.") == "yes."
    flips = [bdhs.plan_prefixes("Yes, there is a dog.", rng, 0.5) for _ in range(200)]
    assert 60 < sum(f for _, f in flips) < 140
    assert all(p[0] == "No," for p, f in flips if f)


class ScriptedEmbedder:
    """Similarity 1.0 (too similar) until attempt `accept_at`, then 0.0 (every candidate accepted)."""

    def __init__(self, accept_at: int):
        self.accept_at, self.calls = accept_at, 0

    def encode(self, texts, **kw):
        self.calls += 1
        attempt = (self.calls + 1) // 2  # refs then candidates, once per attempt
        v = torch.zeros(len(texts), 2)
        v[:, 1 if self.calls % 2 == 0 and attempt >= self.accept_at else 0] = 1.0
        return v


def _rows(pairs_file, n=2):  # noqa: F811
    folder = pairs_file.parent
    return [PreferenceRow(prompt="Describe this image.", chosen=f"A dog and a cat {i}. Yes it is.", rejected="",
                          image=str(folder / f"img{i}.png"), row=i + 1, id=f"r{i}") for i in range(n)]


SMALL = dict(max_new_tokens=4, max_sentence_tokens=3, gen_batch_size=8)


@pytest.mark.parametrize("accept_at, attempts, guided", [(1, 1, True), (3, 3, True), (5, 5, False), (9, 5, None)])
def test_attempt_loop(hf, pairs_file, accept_at, attempts, guided):  # noqa: F811
    gen = bdhs.BDHSGenerator(hf, bdhs.BDHSSettings(**SMALL), embedder=ScriptedEmbedder(accept_at))
    results = gen.generate(_rows(pairs_file), seed=0)
    for res in results:
        assert res.attempts == attempts and len(res.similarities) == attempts
        if guided is None:  # never accepted: dropped
            assert res.rejected is None
        else:
            assert res.rejected and res.guided == guided
    stats = bdhs.pair_stats(results, 0.97)
    assert stats["n_rows"] == 2 and stats["n_pairs"] == (0 if guided is None else 2)


def test_real_embedder_rejects_near_copies(hf, pairs_file, tmp_path):  # noqa: F811
    emb = bdhs.load_embedder()
    gen = bdhs.BDHSGenerator(hf, bdhs.BDHSSettings(**SMALL), embedder=emb)
    sims = gen.similarity(["A dog and a cat.", "A dog and a cat."], ["A dog and a cat.", "A red bus on a road."])
    assert sims[0] > 0.999 and sims[1] < 0.97
    rows = _rows(pairs_file)
    results = gen.generate(rows, seed=1)
    path = bdhs.write_outputs(tmp_path, rows, results, bdhs.pair_stats(results, 0.97))
    pairs = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(pairs) == sum(r.rejected is not None for r in results)
    for p in pairs:
        assert p["bdhs"]["similarity"] < 0.97 and p["rejected"] != p["chosen"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert sum(stats["similarity_histogram"]["all_candidates"]) == sum(r.attempts for r in results)
    assert (tmp_path / "similarity.png").stat().st_size > 1000


def test_cli_generate_and_stats(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from halbench.training.cli import bdhs as bdhs_cli

    runner = CliRunner()
    res = runner.invoke(bdhs_cli, ["generate", "--model", str(tiny_llava), "--data", str(pairs_file), "--output-dir",
                                   str(tmp_path / "o"), "--limit", "2", "--max-new-tokens", "4",
                                   "--max-sentence-tokens", "3"])
    assert res.exit_code == 0, res.output
    assert "8 rows" not in res.output and "pairs accepted" in res.output and (tmp_path / "o" / "pairs.jsonl").is_file()
    res = runner.invoke(bdhs_cli, ["stats", str(tmp_path / "o")])
    assert res.exit_code == 0 and "pairs accepted" in res.output


def test_bdhs_dpo_offline_then_online(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    kw = cfg_kwargs(tiny_llava, pairs_file, tmp_path / "off", max_steps=1, **SMALL)
    final = bdhs.train(bdhs.Config(**kw))
    out = tmp_path / "off" / "train" / "bdhs"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n_rows"] == 8 and final.is_dir()
    mtime = (out / "pairs.jsonl").stat().st_mtime_ns
    # other training settings over a finished run: refused unless resume=false says "retrain here" (issue 14)
    bdhs.train(bdhs.Config(**{**kw, "max_steps": 2, "resume": False}))  # same model/data/bdhs settings: pairs reused
    assert (out / "pairs.jsonl").stat().st_mtime_ns == mtime
    kw = cfg_kwargs(tiny_llava, pairs_file, tmp_path / "on", max_steps=1, online=True, **SMALL)
    bdhs.train(bdhs.Config(**kw))
    rec = json.loads((tmp_path / "on" / "train" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= rec["bdhs/acceptance"] <= 1.0 and "rewards/margins" in rec
