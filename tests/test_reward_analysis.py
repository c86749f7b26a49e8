"""Reward analyses: statistics against reference implementations, and the task end to end on a tiny CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from halbench.errors import DataError
from halbench.evaluator import evaluate
from halbench.models.base import Model
from halbench.schema import Response
from halbench.tasks import reward_analysis as ra
from tests.test_clip_scorer import make_images, make_tiny_clip


# -- statistics ---------------------------------------------------------------------------------------------
def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    assert ra.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ra.auroc([1, 2, 3], [True, True, False]) == 0.0
    assert np.isnan(ra.auroc([1, 2], [True, True]))


def test_correlations_match_scipy():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = np.round(x + rng.normal(size=50), 1)
    assert ra.pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert ra.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(ra.pearson([1, 1, 1], [1, 2, 3]))


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(2).normal(loc=1.0, size=200)
    boot = ra.bootstrap(lambda idx: x[idx].mean(), len(x), n_boot=500, seed=3)
    lo, hi = ra.percentile_ci(boot)
    assert lo < x.mean() < hi and hi - lo < 0.4
    assert (lo, hi) == ra.percentile_ci(ra.bootstrap(lambda idx: x[idx].mean(), len(x), 500, seed=3))
    assert np.isnan(ra.percentile_ci(np.array([np.nan]))[0])


def test_text_metrics_match_nltk_and_rouge():
    import re

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, refs = "A dog is sitting on a red couch.", ["a dog sits on a couch", "a brown dog on the red sofa"]
    got = ra.TextMetrics()(hyp, refs)
    tok = lambda s: re.findall(r"\w+|[^\w\s]", s.lower())  # noqa: E731 - 13a-like for this text
    for n in range(1, 5):
        want = sentence_bleu([tok(r) for r in refs], tok(hyp), weights=(1 / n,) * n,
                             smoothing_function=SmoothingFunction().method3)
        assert got[f"bleu{n}"] == pytest.approx(want, abs=1e-9)
    # LCS with ref 1 = "a dog on a couch" (5): P 5/8, R 5/6 -> F 0.714...; ref 2 scores lower
    assert got["rougeL"] == pytest.approx(2 * (5 / 8) * (5 / 6) / (5 / 8 + 5 / 6))


def test_sentence_spans_follow_chair_splitter():
    text = "A dog on a couch. There is a cat next to it! Mr. Smith has a tv"
    spans = ra.sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["A dog on a couch.", "There is a cat next to it!", "Mr. Smith has a tv"]
    assert [ra.sentence_of(spans, p) for p in (2, 30, 60, None)] == [0, 1, 2, 0]


def _table(token, sentence, halluc, caption):
    return {"token": np.array(token, float), "sentence": np.array(sentence, float),
            "response": np.array(sentence, float), "hallucinated": np.array(halluc, bool),
            "caption": np.array(caption)}


def test_separability_detects_which_reward_separates():
    rng = np.random.default_rng(4)
    n = 400
    y = rng.random(n) < 0.3
    cap = np.repeat(np.arange(100), 4)
    separating, noise = rng.normal(size=n) - 2.0 * y, rng.normal(size=n)
    m = ra.separability_metrics(_table(separating, noise, y, cap), n_boot=300)
    assert m["auroc_token"] > 0.85 and abs(m["auroc_sentence"] - 0.5) < 0.1
    assert m["token_beats_sentence"] == 1 and m["auroc_diff_ci_lo"] > 0
    assert m["auroc_token_ci_lo"] < m["auroc_token"] < m["auroc_token_ci_hi"]
    swapped = ra.separability_metrics(_table(noise, separating, y, cap), n_boot=300)
    assert swapped["token_beats_sentence"] == 0 and swapped["auroc_diff_ci_hi"] < 0


def test_shift_metrics_sign_and_ci():
    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.4
    cap = np.repeat(np.arange(100), 3)
    before = _table(rng.normal(size=300), np.zeros(300), y, cap)
    after = _table(rng.normal(size=300) + 0.5, np.zeros(300), y, cap)
    m = ra.shift_metrics(before, after, n_boot=300)
    assert 0.3 < m["shift_mean_all"] < 0.7 and m["shift_mean_all_ci_lo"] > 0
    assert m["shift_n_hallucinated_before"] == int(y.sum()) and 0 < m["shift_ks_all"] <= 1


# -- the task end to end --------------------------------------------------------------------------------------
CAPTIONS = {  # image index -> caption; gt objects below make "cat" hallucinated in 0 and "car" in 2
    0: "A dog sits on a couch. There is a cat next to it.",
    1: "A red car is on the street. A person is in the car.",
    2: "Two dogs on a couch with a car.",
    3: "A cat on a couch.",
}
GT = {0: ["dog", "couch"], 1: ["car", "person"], 2: ["dog", "couch"], 3: ["cat", "couch"]}


class CaptionModel(Model):
    backend = "test"
    capabilities = frozenset({"generate", "image"})
    model_id = "captions"

    def __init__(self, shift: str = ""):
        self.shift = shift

    def fingerprint(self):
        return "cap0" + self.shift

    def generate(self, requests):
        return [Response(text=CAPTIONS[int(r.id) % 100] + self.shift) for r in requests]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ra")
    clip = make_tiny_clip(root / "clip")
    imgs = make_images(root / "images", n=4)
    named = []
    for i, p in enumerate(imgs):  # COCO-style names, ids 100..103
        q = p.with_name(f"COCO_val2014_{100 + i:012d}.png")
        p.rename(q)
        named.append(q)
    (root / "gt.json").write_text(json.dumps({str(100 + i): v for i, v in GT.items()}))
    anns = [{"image_id": 100 + i, "caption": c} for i, c in enumerate(
        ["a dog on a couch", "a car on a street with a person", "two dogs on a sofa"])]  # 103: no reference
    (root / "caps.json").write_text(json.dumps({"annotations": anns}))
    return root, clip


def _task(root, clip, **kw):
    return ra.RewardAnalysisTask(images=str(root / "images"), gt=str(root / "gt.json"),
                                 captions=str(root / "caps.json"),
                                 clip=str(clip), n_boot=50, pipeline="2018", **kw)  # 2018: no WordNet load


def test_task_end_to_end(world, tmp_path):
    root, clip = world
    res = evaluate(CaptionModel(), [_task(root, clip)], tmp_path / "run", progress=False)
    m = res["tasks"]["reward_analysis"]["metrics"]
    assert m["n_samples"] == 4 and m["n_errors"] == 0 and m["n_reward_errors"] == 0
    assert m["n_no_reference"] == 1 and m["n_correlation"] == 3
    assert m["n_objects"] == 11 and m["n_hallucinated_objects"] == 2  # 3 + 3 (car twice) + 3 + 2
    assert 0 <= m["auroc_token"] <= 1 and m["token_beats_sentence"] in (0, 1)
    recs = {r["image_id"]: r for r in map(json.loads, (tmp_path / "run/samples/reward_analysis.jsonl").open())}
    objs = recs[100]["objects"]
    assert [(o["word"], o["cls"], o["hallucinated"]) for o in objs] == [
        ("dog", "dog", False), ("couch", "couch", False), ("cat", "cat", True)]
    # the sentence reward of an object is the reward of its own sentence, not of the whole caption
    task = _task(root, clip)
    s1, s2 = task.scorer.sentence_rewards([recs[100]["image"]] * 2,
                                          ["A dog sits on a couch.", "There is a cat next to it."])
    assert [o["sentence_reward"] for o in objs] == pytest.approx([s1, s1, s2], abs=1e-5)
    assert objs[2]["token_reward"] == pytest.approx(task.scorer.token_rewards(recs[100]["image"], ["cat"])[0], abs=1e-5)
    assert recs[103]["has_reference"] is False and "bleu1" not in recs[103]
    assert recs[101]["has_reference"] is True and 0 < recs[101]["bleu1"] <= 1
    arts = res["tasks"]["reward_analysis"]["artifacts"]
    assert len(arts) == 2 and all((tmp_path / "run" / a).stat().st_size > 1000 for a in arts.values())


def test_unreadable_image_is_counted_not_dropped(world, tmp_path):
    root, clip = world
    bad = tmp_path / "images"
    bad.mkdir()
    for f in (root / "images").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "COCO_val2014_000000000101.png").write_bytes(b"garbage")
    task = ra.RewardAnalysisTask(images=str(bad), gt=str(root / "gt.json"), captions="none", clip=str(clip), n_boot=20,
                                 pipeline="2018")
    from halbench.errors import DataError

    with pytest.raises(DataError, match="000000000101.png"):  # the evaluator's preflight refuses it (issue 14)
        evaluate(CaptionModel(), [task], tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()
    # given samples that skip the preflight (a Python caller), the task itself counts the failure
    res = evaluate(CaptionModel(), [task], tmp_path / "run", progress=False, samples=[task.samples()])
    m = res["tasks"]["reward_analysis"]["metrics"]
    assert m["n_reward_errors"] == 1 and m["n_no_reference"] == 4 and m["n_objects"] == 8  # 11 - 3
    rec = [json.loads(x) for x in (tmp_path / "run/samples/reward_analysis.jsonl").open()][1]
    assert "000000000101.png" in rec["reward_error"] and rec["objects"] == []


def test_reward_shift_between_runs(world, tmp_path):
    root, clip = world
    evaluate(CaptionModel(), [_task(root, clip)], tmp_path / "a", progress=False)
    evaluate(CaptionModel(" A dog."), [_task(root, clip)], tmp_path / "b", progress=False)
    m = ra.reward_shift(tmp_path / "a", tmp_path / "b", tmp_path / "shift", n_boot=50)
    assert m["shift_n_all_before"] == 11 and m["shift_n_all_after"] == 15
    assert (tmp_path / "shift/reward_shift.png").stat().st_size > 1000
    assert json.loads((tmp_path / "shift/reward_shift.json").read_text())["metrics"]["shift_n_all_after"] == 15
    res = evaluate(CaptionModel(" A dog."), [_task(root, clip, baseline_run=str(tmp_path / "a"))], tmp_path / "c",
                   progress=False)
    assert res["tasks"]["reward_analysis"]["metrics"]["shift_n_all_after"] == 15
    with pytest.raises(DataError, match="no reward_analysis records"):
        ra.reward_shift(tmp_path / "nope", tmp_path / "b", tmp_path / "x")
