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


def test_guidance_plans_use_ground_truth_contexts():
    rng = np.random.default_rng(0)
    answer = "The image shows a dog and a cat. There is also a red car. A tree stands behind it."
    sents = bdhs.split_sentences(answer)
    for _ in range(20):
        plan = bdhs.plan_guidance(answer, rng, 0.5)
        assert plan.flipped == 0 and plan.sentences == sents
        for k, (kept, ctx, s) in enumerate(zip(plan.kept, plan.contexts, sents)):
            assert s.startswith(kept) and len(kept.split()) < len(s.split())  # at least one word generated
            assert ctx == " ".join(x for x in (*sents[:k], kept) if x)  # y+_<k + kept part of sentence k


def test_yes_no_swap_is_tested_on_every_sentence_before_splitting():
    assert bdhs.flip_yes_no("Yes, a dog.") == "No, a dog." and bdhs.flip_yes_no("no.") == "yes."
    assert bdhs.flip_yes_no("  No way") == "  Yes way" and bdhs.flip_yes_no("Nothing here.") == "Nothing here."
    answer = "Yes, there is a dog. It is brown. no, there is no cat."
    plan = bdhs.plan_guidance(answer, np.random.default_rng(1), 1.0)
    assert plan.flipped == 2
    assert plan.sentences == ["No, there is a dog.", "It is brown.", "yes, there is no cat."]
    assert plan.contexts[2].startswith("No, there is a dog. It is brown.")  # swapped y+ is the context
    rng = np.random.default_rng(0)
    plans = [bdhs.plan_guidance(answer, rng, 0.5) for _ in range(400)]
    third = sum(p.sentences[2].startswith("yes") for p in plans)
    first = sum(p.sentences[0].startswith("No") for p in plans)
    assert 150 < third < 250 and 150 < first < 250  # each sentence swapped independently with p = 0.5


class RecordingSampler:
    """A stub corrupted model: records every call's contexts and returns a marker continuation."""

    def __init__(self):
        self.calls = []

    def __call__(self, requests, contexts, *, seed, max_new_tokens, one_sentence):
        self.calls.append({"contexts": list(contexts), "one_sentence": one_sentence, "n": len(requests),
                           "max_new_tokens": max_new_tokens})
        return [" GEN%d." % i if one_sentence else "An unguided GEN answer." for i in range(len(requests))]


class ConstEmbedder:
    """Every candidate has cosine similarity 1.0 with its reference (fails the 0.97 filter)."""

    def encode(self, texts, **kw):
        return torch.ones(len(texts), 1)


def _row(text, i=0):
    return PreferenceRow(prompt="Describe this image.", chosen=text, rejected="", image="unused.png", row=i + 1,
                         id=f"r{i}")


def test_every_sentence_is_generated_in_parallel_from_ground_truth_prefixes():
    answer = "The image shows a dog and a cat. There is also a red car. A tree stands behind it."
    sampler = RecordingSampler()
    settings = bdhs.BDHSSettings(max_attempts=1, gen_batch_size=16, sim_threshold=0.97)
    gen = bdhs.BDHSGenerator(None, settings, embedder=ConstEmbedder(), sampler=sampler)
    gen.generate([_row(answer)], seed=0)
    assert len(sampler.calls) == 1  # one pass: sentence k never waits for sentence k-1's output
    call = sampler.calls[0]
    assert call["n"] == 3 and call["one_sentence"]
    plan = bdhs.plan_guidance(answer, np.random.default_rng([0, 1, 0]), 0.5)
    assert [c or "" for c in call["contexts"]] == plan.contexts
    assert not any("GEN" in (c or "") for c in call["contexts"])  # no generated text in any prefix


def test_guided_rejected_is_kept_parts_plus_completions():
    answer = "A dog sits. A cat sleeps."
    sampler = RecordingSampler()
    gen = bdhs.BDHSGenerator(None, bdhs.BDHSSettings(max_attempts=1), embedder=ConstEmbedder(), sampler=sampler)
    plan = bdhs.plan_guidance(answer, np.random.default_rng([0, 1, 0]), 0.5)
    out = gen.guided([_row(answer)], [plan], seed=0)[0]
    assert out == " ".join(bdhs.join_completion(k, f" GEN{i}.") for i, k in enumerate(plan.kept))
    assert bdhs.join_completion("A dog", "sits.") == "A dog sits." and bdhs.join_completion("", " x.") == "x."


def test_last_attempt_is_unguided_and_accepted_regardless_of_similarity():
    sampler = RecordingSampler()
    gen = bdhs.BDHSGenerator(None, bdhs.BDHSSettings(max_attempts=5), embedder=ConstEmbedder(), sampler=sampler)
    res = gen.generate([_row("A dog sits. A cat sleeps.", 0), _row("Yes, it is.", 1)], seed=0)
    assert len(sampler.calls) == 5
    assert all(c["one_sentence"] for c in sampler.calls[:4])
    last = sampler.calls[4]
    assert last["contexts"] == [None, None] and not last["one_sentence"]  # full answer, no guidance
    for r in res:
        assert r.rejected == "An unguided GEN answer." and r.attempts == 5 and r.forced and not r.guided
        assert r.similarities == [1.0] * 5
    stats = bdhs.pair_stats(res, 0.97)
    assert stats["n_pairs"] == 2 and stats["n_forced"] == 2 and stats["n_unguided"] == 2
    # with N_BDHS = 1 there is no unguided attempt: the only (guided) one must pass the filter
    one = bdhs.BDHSGenerator(None, bdhs.BDHSSettings(max_attempts=1), embedder=ConstEmbedder(),
                             sampler=RecordingSampler()).generate([_row("A dog sits.")], seed=0)
    assert one[0].rejected is None and one[0].attempts == 1


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


@pytest.mark.parametrize("accept_at, attempts, guided", [(1, 1, True), (3, 3, True), (5, 5, False), (9, 5, False)])
def test_attempt_loop(hf, pairs_file, accept_at, attempts, guided):  # noqa: F811
    gen = bdhs.BDHSGenerator(hf, bdhs.BDHSSettings(**SMALL), embedder=ScriptedEmbedder(accept_at))
    results = gen.generate(_rows(pairs_file), seed=0)
    for res in results:
        assert res.attempts == attempts and len(res.similarities) == attempts
        assert res.rejected and res.guided == guided
        assert res.forced == (accept_at > 5)  # the unguided last attempt is accepted even when too similar
    stats = bdhs.pair_stats(results, 0.97)
    assert stats["n_rows"] == 2 and stats["n_pairs"] == 2


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
        assert (p["bdhs"]["similarity"] < 0.97 or p["bdhs"]["forced"]) and p["rejected"]
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
    res = runner.invoke(bdhs_cli, ["generate", "--model", str(tiny_llava), "--data", str(pairs_file), "--output-dir",
                                   str(tmp_path / "n"), "--limit", "1", "--max-new-tokens", "3", "--corruption",
                                   "noise", "--max-sentence-tokens", "2"])
    assert res.exit_code == 0, res.output
    assert "forced" in res.output and (tmp_path / "n" / "pairs.jsonl").is_file()


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


def test_avg_dpo_combines_external_and_bdhs_rejected(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    kw = cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=1, per_device_batch_size=8,
                    external_rejected="avg", **SMALL)
    bdhs.train(bdhs.Config(**kw))
    rec = json.loads((tmp_path / "train" / "metrics.jsonl").read_text().splitlines()[0])
    # Eq. 5 with gamma 0.5 and no SFT term: loss = 0.5 * DPO(y+, y_ext-) + 0.5 * DPO(y+, y_bdhs-)
    assert rec["loss"] == pytest.approx(0.5 * rec["external/dpo_loss"] + 0.5 * rec["dpo_loss"], rel=1e-5)
    pairs = [json.loads(x) for x in (tmp_path / "train" / "bdhs" / "pairs.jsonl").read_text().splitlines()]
    src = {json.loads(x)["id"]: json.loads(x) for x in pairs_file.read_text().splitlines()}
    assert pairs and all(p["external_rejected"] == src[p["id"]]["rejected"] for p in pairs)


def test_bdhs_noise_schedule_matches_povid_formula():
    from halbench.training.bdhs_noise import alpha_bar, diffusion_noise

    k = np.arange(1000)
    betas = 1 / (1 + np.exp(-(-6 + 12 * k / 999))) * (5e-3 - 1e-5) + 1e-5  # POVID: linspace(-6, 6, 1000)
    assert alpha_bar(500) == pytest.approx(float(np.prod(1 - betas[:501])), rel=1e-5)
    assert 0.74 < alpha_bar(500) < 0.75 and alpha_bar(0) == pytest.approx(1 - 1e-5 - 5e-3 / (1 + np.exp(6)), rel=1e-6)
    x = torch.full((2, 3, 64, 64), 0.7)
    y = diffusion_noise(x, 500, torch.Generator().manual_seed(0))
    ab = alpha_bar(500)
    assert float(y.mean()) == pytest.approx(ab ** 0.5 * 0.7, abs=0.01)
    assert float(y.std()) == pytest.approx((1 - ab) ** 0.5, rel=0.02)


def test_noise_sampler_feeds_noised_pixels_with_attention_unmasked(hf, pairs_file):  # noqa: F811
    from halbench.training.bdhs_noise import diffusion_noise, generate_noised_texts

    seen = {}
    real = hf.model.generate

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    reqs = [Request(id="a", prompt="Describe this image.", image=str(pairs_file.parent / "img0.png"))]
    clean = hf.build_inputs(reqs, ["A dog"])
    hf.model.generate = spy
    try:
        texts = generate_noised_texts(hf, reqs, ["A dog"], noise_step=500, seed=3, max_new_tokens=3, temperature=0)
    finally:
        del hf.model.generate
    expected = diffusion_noise(clean["pixel_values"], 500, torch.Generator().manual_seed(3))
    assert torch.allclose(seen["pixel_values"], expected) and not torch.allclose(expected, clean["pixel_values"])
    assert torch.equal(seen["attention_mask"], clean["attention_mask"]) and len(texts) == 1


def test_online_bdhs_regenerates_from_the_current_policy(tiny_llava, pairs_file, tmp_path, monkeypatch):  # noqa: F811
    seen = []

    class Recording(bdhs.BDHSGenerator):
        def generate(self, rows, indices=None, seed=0, progress=False):
            w = next(p for n, p in self.hf.model.named_parameters() if "lm_head" in n or "embed_tokens" in n)
            seen.append(float(w.detach().double().sum()))
            return super().generate(rows, indices, seed, progress)

    monkeypatch.setattr(bdhs, "BDHSGenerator", Recording)
    kw = cfg_kwargs(tiny_llava, pairs_file, tmp_path, max_steps=2, online=True, learning_rate=1e-2, **SMALL)
    bdhs.train(bdhs.Config(**kw))
    assert len(seen) == 2 and seen[0] != seen[1]  # step 2's rejected answers come from the updated weights
