"""CHAIR parity with the official scorers on released outputs (data: tests/data/{objhal,chair}, READMEs there).

Run alone: pytest tests/test_chair_parity.py -s  (prints the figures)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from halbench.errors import NotAvailableError
from halbench.tasks.chair import ChairScorer, ChairTask, chair_metrics, load_gt

DATA = Path(__file__).parent / "data"
GT = DATA / "chair" / "gt_subset_opera_style.json"
# entries that synonyms_refine.txt adds or un-breaks relative to synonyms.txt
REFINED_ONLY = {"brother", "pedestrian", "coffee table", "remote control", "motor bike", "cheesecake"}


@pytest.fixture(scope="module")
def official():
    return json.loads(gzip.open(DATA / "objhal" / "kchaosun_beam_search_eval_chair300.json.gz").read())


@pytest.fixture(scope="module")
def gt():
    return load_gt(GT)


def _scorer(synonyms):
    try:
        return ChairScorer(synonyms, "opera")
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


def test_objhal_exercise_run_matches_official_output_exactly(official, gt):
    """kchaosun beam-search answers: the official OPERA-style chair.py output, caption by caption.

    The official run used the synonym list embedded in OPERA's chair.py (= coco2018): its cached vocabulary
    (refdata chair_vocab_from_official_cache.json) has " motor bike" and no "pedestrian"."""
    scorer = _scorer("coco2018")
    recs = []
    for s in official["sentences"]:
        assert gt[s["image_id"]] == set(s["mscoco_gt_words"])
        r = scorer.score_caption(s["caption"], gt[s["image_id"]])
        halluc = [(lem, c) for lem, c in zip(r["mention_lemmas"], r["mentioned"]) if c not in gt[s["image_id"]]]
        assert halluc == [tuple(x) for x in s["mscoco_hallucinated_words"]], s["image_id"]
        assert r["mentioned"] == s["mscoco_generated_words"], s["image_id"]
        recs.append(r)
    m = chair_metrics(recs)
    print(f"\nobjhal exercise: CHAIRs {m['n_hallucinated_captions']}/{m['n_captions']} "
          f"CHAIRi {m['n_hallucinated_mentions']}/{m['n_mentions']} Recall {m['n_covered_gt_objects']}/{m['n_gt_objects']}")
    assert (m["n_hallucinated_captions"], m["n_captions"]) == (73, 300)
    assert (m["n_hallucinated_mentions"], m["n_mentions"]) == (87, 1287)
    assert (m["n_covered_gt_objects"], m["n_gt_objects"]) == (593, 954)
    ref = official["overall_metrics"]
    assert m["chair_s"] == pytest.approx(ref["CHAIRs"], abs=1e-12)
    assert m["chair_i"] == pytest.approx(ref["CHAIRi"], abs=1e-12)
    assert m["recall"] == pytest.approx(ref["Recall"], abs=1e-12)
    assert m["len"] * 0.01 == pytest.approx(ref["Len"], abs=1e-12)


def test_refined_synonyms_differ_only_through_refined_entries(official, gt):
    """With the Object HalBench list the same run scores 78/300, 96/1303; every difference is a mention of a
    word that only the refined list knows (pedestrian, brother, ...)."""
    scorer = _scorer("objhal_refined")
    recs = [scorer.score_caption(s["caption"], gt[s["image_id"]]) for s in official["sentences"]]
    for s, r in zip(official["sentences"], recs):
        if r["mentioned"] != s["mscoco_generated_words"]:
            extra = [lem for lem in r["mention_lemmas"] if lem in REFINED_ONLY]
            assert extra, (s["image_id"], r["mention_lemmas"])
    m = chair_metrics(recs)
    assert (m["n_hallucinated_captions"], m["n_hallucinated_mentions"], m["n_mentions"]) == (78, 96, 1303)


def test_opera_llava15_released_captions_give_published_chair_s(tmp_path):
    """OPERA log llava-1.5/ours.jsonl: published CHAIRs 44.6, CHAIRi 12.8 (arXiv 2311.17911).

    CHAIRs reproduces (223/500). CHAIRi is 464/3653 = 12.70%, 0.1 under the published 12.8 (466 hallucinated
    mentions would round up). The shared GT sets came from another machine's OPERA-style cache; every
    tokenizer variant we tried on the captions gives the same counts, so the gap is in the GT sets, which
    cannot be rebuilt offline (no COCO captions here). Re-scorers report the same gap (zjunlp/Deco#6)."""
    _scorer("coco2018")
    pred = tmp_path / "ours.jsonl"
    pred.write_bytes(gzip.open(DATA / "chair" / "opera_llava15_ours.jsonl.gz").read())
    m = ChairTask.score_predictions(pred, gt=GT, variant="opera", synonyms="coco2018")
    print(f"\nOPERA llava-1.5 ours: CHAIRs {100 * m['chair_s']:.1f} CHAIRi {100 * m['chair_i']:.2f} "
          f"Recall {100 * m['recall']:.1f} Len {m['len']:.1f}")
    assert round(100 * m["chair_s"], 1) == 44.6
    assert (m["n_hallucinated_captions"], m["n_hallucinated_mentions"], m["n_mentions"]) == (223, 464, 3653)
    assert abs(100 * m["chair_i"] - 12.8) <= 0.1
