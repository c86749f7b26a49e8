"""FiSAO: reward mapping, token-level loss, token alignment of mentions, and a training run on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from halbench.errors import HalbenchError
from halbench.training import fisao
from halbench.training.losses import fisao_normalize_reward, fisao_policy_loss, kl_k3
from tests.test_clip_scorer import make_images, make_tiny_clip


# -- losses -------------------------------------------------------------------------------------------------
def test_normalize_reward_maps_baselines_to_plus_minus_one():
    s = torch.tensor([0.1, 0.2, 0.25, 0.3, 0.5])
    assert fisao_normalize_reward(s, 0.3, 0.2).tolist() == pytest.approx([-1, -1, 0, 1, 1])
    assert fisao_normalize_reward(s, 0.3, 0.2, "threshold").tolist() == [-1, -1, 0, 1, 1]
    assert fisao_normalize_reward(torch.tensor([0.22]), 0.3, 0.2).item() == pytest.approx(-0.6)
    with pytest.raises(ValueError, match="must exceed"):
        fisao_normalize_reward(s, 0.2, 0.3)
    # strict=False keeps the verifier's own direction (higher score = better), never flips it
    assert fisao_normalize_reward(s, 0.2, 0.3, strict=False).tolist() == pytest.approx([-1, -1, 0, 1, 1], abs=1e-4)


def test_kl_k3_is_nonnegative_and_unbiased():
    torch.manual_seed(0)
    assert kl_k3(torch.zeros(3), torch.zeros(3)).abs().max() == 0
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.5, 0.25, 0.25])
    x = torch.multinomial(p, 200000, replacement=True)
    est = kl_k3(p.log()[x], q.log()[x])
    assert est.min() >= 0 and est.mean().item() == pytest.approx((p * (p / q).log()).sum().item(), abs=3e-3)


def test_policy_loss_gradient_is_per_token_policy_gradient():
    torch.manual_seed(0)
    logps = torch.randn(2, 5, requires_grad=True)
    adv = torch.tensor([[0.0, 1.0, 0.0, -1.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    loss, stats = fisao_policy_loss(logps, logps.detach(), logps.detach(), adv, mask, kl_beta=0.1)
    loss.backward()
    # ratio = 1 and policy == reference: dL/dlogp = -A / n_tokens on response tokens, 0 elsewhere
    assert torch.allclose(logps.grad, -adv * mask / 7)
    assert stats["kl"] == 0 and stats["clip_frac"] == 0


def test_policy_loss_clips_and_penalises_drift():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_()
    adv = torch.tensor([[1.0, -1.0]])
    loss, stats = fisao_policy_loss(new, old, old, adv, torch.ones(1, 2, dtype=torch.bool), clip_eps=0.2, kl_beta=0)
    loss.backward()
    assert stats["clip_frac"] == 1 and torch.all(new.grad == 0)  # both ratios beyond the clip in A's direction
    _, drift = fisao_policy_loss(new.detach(), new.detach(), old, adv, torch.ones(1, 2, dtype=torch.bool))
    assert drift["kl"] > 0


def test_discounted_returns():
    from halbench.training.losses import discounted_returns

    r = torch.tensor([[0.0, 1.0, 0.0, -1.0, 0.0]])
    m = torch.tensor([[True, True, True, True, False]])
    assert discounted_returns(r, m, 0.0).tolist() == r.tolist()
    assert discounted_returns(r, m, 1.0).tolist() == [[0.0, 0.0, -1.0, -1.0, 0.0]]
    assert discounted_returns(r, m, 0.5).tolist() == [[0.375, 0.75, -0.5, -1.0, 0.0]]


def test_repeated_mentions_earn_no_bonus():
    from types import SimpleNamespace as M

    ms = [M(cls="person"), M(cls="person"), M(cls="cat"), M(cls="cat")]
    assert fisao.repeat_policy(ms, [0.5, 0.5, -1.0, -1.0], "no_bonus") == [0.5, 0.0, -1.0, -1.0]
    assert fisao.repeat_policy(ms, [0.5, 0.5, -1.0, -1.0], "keep") == [0.5, 0.5, -1.0, -1.0]


# -- token alignment -----------------------------------------------------------------------------------------
def test_mention_tokens_spell_the_mention():
    from halbench.testing.tiny import build_tokenizer

    tok = build_tokenizer(["A dog and a dining table."])
    text = " A dog sits next to a dining table."
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    decoded, spans = fisao.token_char_spans(tok, ids)
    assert decoded == text and spans[-1][0] == spans[-1][1]  # eos decodes to nothing
    start = text.index("dining table")
    picked = fisao.mention_token_mask(spans, start, start + len("dining table"))
    assert tok.decode([ids[j] for j in picked]).strip() == "dining table"


# -- on tiny models -------------------------------------------------------------------------------------------
CAPTIONS = ["A dog on a couch with a cat.", "There is a dog and a car.", "A couch next to a cat."]
GT = {0: ["dog", "couch"], 1: ["dog"], 2: ["couch", "cat"], 3: ["dog", "car"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from halbench.testing.tiny import make_tiny_llava

    root = tmp_path_factory.mktemp("fisao")
    vlm = make_tiny_llava(root / "vlm", texts=CAPTIONS)
    clip = make_tiny_clip(root / "clip")
    images = make_images(root / "images", n=4)
    for i, p in enumerate(images):
        p.rename(p.with_name(f"{i + 1:012d}.png"))
    (root / "gt.json").write_text(json.dumps({str(i + 1): v for i, v in GT.items()}))
    return root, vlm, clip


def _cfg(root, vlm, clip, out, **kw):
    base = dict(model=str(vlm), output_dir=str(out), images=str(root / "images"), gt=str(root / "gt.json"),
                clip=str(clip), phrase_template="{}", calibration_images=4, per_device_batch_size=2,
                num_samples=2, max_steps=2, save_steps=0, learning_rate=1e-3, warmup_ratio=0.0,
                pipeline="2018", max_new_tokens=8)
    return fisao.Config(**{**base, **kw})


def _fake_rollouts(monkeypatch):
    """Rollouts with object mentions (a random tiny VLM mentions none): fixed captions, cycled."""
    calls = []

    def sample(session, items, cfg, tag, n):
        calls.append(tag)
        return [CAPTIONS[k % len(CAPTIONS)] for k in range(len(items) * n)]

    def batch(session, items, cfg, tag, n):
        texts = sample(session, items, cfg, tag, n)
        return texts, session.batcher.sequences(fisao._requests(items, cfg, tag, n), texts)

    monkeypatch.setattr(fisao, "sample_texts", sample)
    monkeypatch.setattr(fisao, "rollout_batch", batch)
    return calls


def test_advantages_sit_on_mention_tokens(env, tmp_path, monkeypatch):
    root, vlm, clip = env
    cfg = _cfg(root, vlm, clip, tmp_path, reward_mapping="linear")
    from halbench.training.loop import Session

    session = Session(cfg, "fisao")
    verifier = fisao.Verifier(cfg)
    items = fisao.load_items(cfg, session)[:1]
    batch = session.batcher.sequences(fisao._requests(items, cfg, "t", 1), [CAPTIONS[0]])
    cal = {"token_baseline_correct": 1.0, "token_baseline_hallucinated": -1.0,  # identity mapping: r = score
           "sentence_baseline_correct": 1.0, "sentence_baseline_hallucinated": -1.0}
    adv, st = fisao.advantages(session, verifier, batch, items, cfg, cal)
    assert st["n_objects"] == 3 and st["n_hallucinated"] == 1  # dog, couch correct; cat hallucinated
    cols = (adv[0] != 0).nonzero().flatten() + 1
    words = session.hf.tokenizer.decode(batch["input_ids"][0, cols]).split()
    assert words == ["dog", "couch", "cat"]
    scores = verifier.clip.token_rewards(items[0]["image"], ["dog", "couch", "cat"])
    assert sorted(set(adv[0][adv[0] != 0].tolist())) == pytest.approx(sorted(set(scores)), abs=1e-5)
    sent = fisao.advantages(session, verifier, batch, items, _cfg(root, vlm, clip, tmp_path, reward_level="sentence",
                                                                   reward_mapping="linear"),
                            cal)[0]
    resp = batch["labels"][0, 1:] != -100
    assert torch.all(sent[0][resp] == sent[0][resp][0]) and torch.all(sent[0][~resp] == 0)


def _oracle_verifier(monkeypatch, root):
    """A verifier that knows the ground truth (a random tiny CLIP ranks objects arbitrarily, and calibration
    rightly refuses a verifier that scores hallucinations higher): 0.3 for present objects, 0.1 for absent."""
    from halbench.clip_scorer import ClipScorer

    gt = {f"{i + 1:012d}.png": set(v) for i, v in GT.items()}

    def token_rewards(self, image, phrases):
        return [0.3 if p.rstrip("s") in gt[str(image).rsplit("/", 1)[-1]] else 0.1 for p in phrases]

    monkeypatch.setattr(ClipScorer, "token_rewards", token_rewards)


def test_train_updates_policy_and_logs(env, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    root, vlm, clip = env
    calls = _fake_rollouts(monkeypatch)
    _oracle_verifier(monkeypatch, root)
    final = fisao.METHOD.train(_cfg(root, vlm, clip, tmp_path / "out", policy_update="reinforce"))
    assert calls == ["calib", "step0", "step1"]
    cal = json.loads((tmp_path / "out/train/fisao_calibration.json").read_text())
    assert cal["n_captions"] == 4 and cal["n_hallucinated_objects"] >= 1
    assert cal["token_baseline_correct"] == pytest.approx(0.3)
    assert cal["token_baseline_hallucinated"] == pytest.approx(0.1) and cal["token_auroc"] == 1.0
    lines = [json.loads(x) for x in (tmp_path / "out/train/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert {"loss", "pg_loss", "kl", "reward/mean", "rollout/hallucinated_frac"} <= set(lines[0])
    assert json.loads((tmp_path / "out/train/status.json").read_text())["status"] == "ok"
    before, after = load_file(vlm / "model.safetensors"), load_file(final / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    lm = {k for k in before if "vision_tower" not in k}
    assert changed == lm  # every language-model/projector tensor moved; the frozen vision tower did not


def test_bad_settings_and_inverted_verifier(env, tmp_path):
    root, vlm, clip = env
    with pytest.raises(HalbenchError, match="reward_level"):
        _cfg(root, vlm, clip, tmp_path, reward_level="word").check()
    with pytest.raises(HalbenchError, match="would teach hallucination"):
        fisao.check_baselines({"n_captions": 3, "token_baseline_correct": 0.1, "token_baseline_hallucinated": 0.2},
                              "token")
    with pytest.raises(HalbenchError, match="no hallucinated objects"):
        fisao.check_baselines({"n_captions": 3, "token_baseline_correct": 0.1, "token_baseline_hallucinated": None},
                              "token")


def test_ppo_epochs_reuse_rollouts_with_fixed_old_logps(env, tmp_path, monkeypatch):
    root, vlm, clip = env
    calls = _fake_rollouts(monkeypatch)
    _oracle_verifier(monkeypatch, root)
    fisao.METHOD.train(_cfg(root, vlm, clip, tmp_path / "out", policy_update="ppo", ppo_epochs=2, max_steps=4,
                            learning_rate=5e-2, clip_eps=0.05))
    assert calls == ["calib", "step0", "step2"]  # one rollout batch per 2 optimizer steps
    lines = [json.loads(x) for x in (tmp_path / "out/train/metrics.jsonl").read_text().splitlines()]
    assert lines[0]["ppo/ratio_mean"] == pytest.approx(1.0) and lines[0]["clip_frac"] == 0  # fresh rollout
    assert lines[1]["ppo/ratio_mean"] != pytest.approx(1.0, abs=1e-6)  # second update: old log-probs fixed
    assert lines[1]["clip_frac"] > 0 and lines[2]["ppo/ratio_mean"] == pytest.approx(1.0)


def test_rollout_batch_holds_the_sampled_token_ids(env):
    from halbench.models.hf import HFModel
    from halbench.schema import GenerationSettings, Request
    from halbench.training.fisao_data import rollout

    root, vlm, clip = env
    hf = HFModel(vlm, seed=3)
    g = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.0)
    reqs = [Request(id=f"q{i}", prompt="Please describe this image in detail.",
                    image=str(root / "images" / f"{i + 1:012d}.png"), generation=g) for i in range(3)]
    texts, batch = rollout(hf, reqs, max_length=512)
    assert texts == [r.text for r in hf.generate_plain(reqs)]  # same seeding as evaluation's sampler
    for r in range(3):
        ids = batch["input_ids"][r][batch["labels"][r] != -100].tolist()
        assert 1 <= len(ids) <= 12  # never more tokens than were generated (re-tokenizing made 67 of 48)
        body = ids[:-1] if ids[-1] == hf.tokenizer.eos_token_id else ids
        assert hf.tokenizer.decode(body, skip_special_tokens=True).strip() == texts[r]


def test_llava_instruct_prompts_and_expanded_object_set(env, tmp_path):
    root, vlm, clip = env
    data = [{"id": f"{i:012d}", "image": f"{i:012d}.png", "conversations": [
        {"from": "human", "value": f"<image>\nWhat is in picture {i}?"}, {"from": "gpt", "value": "A dog."},
        {"from": "human", "value": "And else?"}, {"from": "gpt", "value": "Nothing."}]} for i in (1, 2, 3, 4)]
    (tmp_path / "llava_instruct_150k.json").write_text(json.dumps(data))
    cfg = _cfg(root, vlm, clip, tmp_path / "o", prompts=str(tmp_path / "llava_instruct_150k.json"), prompts_limit=3)
    items = fisao.load_items(cfg, None)
    assert [it["prompt"] for it in items] == [f"What is in picture {i}?" for i in (1, 2, 3)]
    assert items[0]["gt_objects"] == sorted(GT[0]) and items[0]["image"].endswith("000000000001.png")
    assert [r.prompt for r in fisao._requests(items[:1], cfg, "t", 1)] == ["What is in picture 1?"]
    data[1]["image"] = "missing.png"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(HalbenchError, match="item 2: image missing.png not found"):
        fisao.load_items(_cfg(root, vlm, clip, tmp_path / "o", prompts=str(tmp_path / "bad.json")), None)
    from halbench.tasks.chair_text import SynonymTable

    coco = SynonymTable.load("coco2018").path.read_text()
    (tmp_path / "objects.txt").write_text(coco.rstrip("\n") + "\nballoon, balloons\n")
    wide = fisao.Verifier(_cfg(root, vlm, clip, tmp_path / "o", synonyms=str(tmp_path / "objects.txt")))
    narrow = fisao.Verifier(_cfg(root, vlm, clip, tmp_path / "o"))
    assert [m.cls for m in wide.mentions("A dog with two balloons.")] == ["dog", "balloon"]
    assert [m.cls for m in narrow.mentions("A dog with two balloons.")] == ["dog"]
