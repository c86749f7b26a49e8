"""Length-matched controls (reports/length_control.py, length_view.py): truncation, re-scoring, statistics.

The 2018 CHAIR pipeline needs no NLTK data, so most tests use it; the OPERA-pipeline test skips without
NLTK's WordNet/tagger. Expected values are worked out by hand from the captions below.
"""

from __future__ import annotations

import pytest

from halbench.reports.length_control import (check_rescoring, compare, cut_points, first_mentions, objects_control,
                                             point_values, rescore, scorer_for, truncate_to_objects,
                                             truncate_to_words, words_control)
from halbench.reports.length_view import comparison_json, control_table, length_table, summary_sentence
from halbench.tasks.chair import ChairScorer

CHAIR_2018 = {"task": {"name": "chair", "variant": "2018", "synonyms": "coco2018", "options": {}}}


@pytest.fixture(scope="module")
def scorer():
    return ChairScorer("coco2018", "2018")


def rec(scorer, sid, caption, gt):
    return {"id": sid, "image_id": sid, **scorer.score_caption(caption, gt)}


def test_cut_points_fall_on_word_and_punctuation_ends():
    assert cut_points("A dog, a cat.") == [1, 5, 6, 8, 12, 13]


def test_truncate_to_objects_cuts_right_after_the_kth_mention(scorer):
    cap = "A dog and a cat sit on a couch near a tv."
    assert truncate_to_objects(scorer, cap, 2) == "A dog and a cat"
    assert truncate_to_objects(scorer, cap, 1) == "A dog"
    assert truncate_to_objects(scorer, cap, 0) == ""
    assert truncate_to_objects(scorer, cap, 4) == cap and truncate_to_objects(scorer, cap, 9) == cap
    # a double word is never split: "hot" alone names nothing, "hot dog" is one mention
    assert truncate_to_objects(scorer, "A man eats a hot dog near a car.", 2) == "A man eats a hot dog"


def test_truncate_to_words_keeps_the_longest_prefix_within_the_count(scorer):
    cap = "A dog and a cat sit on a couch."
    full = len(scorer.analyze(cap).words)
    assert truncate_to_words(scorer, cap, full) == cap
    short = truncate_to_words(scorer, cap, 4)
    assert short == "A dog and a" and len(scorer.analyze(short).words) == 4
    assert truncate_to_words(scorer, cap, 0) == ""


def test_rescore_uses_the_base_records_ground_truth(scorer):
    base = rec(scorer, "7", "A dog and a cat.", ["dog"])
    again = rescore(scorer, base, "A dog and a cat")
    assert again["id"] == "7" and again["mentioned"] == ["dog", "cat"] and again["hallucinated"] == ["cat"]


def pairs_for(scorer):
    """Two images. Base names a hallucinated object in each; trained names fewer objects."""
    p1 = (rec(scorer, "1", "A dog, a cat and a horse.", ["dog", "horse"]),   # cat hallucinated
          rec(scorer, "1", "A horse.", ["dog", "horse"]))                     # 1 object
    p2 = (rec(scorer, "2", "A cat and a dog.", ["dog"]),                     # cat hallucinated
          rec(scorer, "2", "A dog.", ["dog"]))                                # 1 object, correct
    return [p1, p2]


def test_objects_control_rescoring_matches_hand_computed_chair(scorer):
    pairs = pairs_for(scorer)
    ctl = objects_control(scorer, pairs)
    assert [r["caption"] for r in ctl.records] == ["A dog", "A cat"]
    assert ctl.n_cut == 2 and ctl.mismatched == 0
    v = point_values(ctl.records)
    assert v["chair_i"] == pytest.approx(1 / 2)  # "dog" correct, "cat" hallucinated
    assert v["chair_s"] == pytest.approx(1 / 2)
    assert v["recall"] == pytest.approx(1 / 3)  # dog of {dog, horse}; nothing of {dog}
    assert v["objects"] == pytest.approx(1.0)
    run = point_values([b for _, b in pairs])
    assert run["chair_i"] == 0 and run["recall"] == pytest.approx(2 / 3)


def test_words_control_is_cut_to_the_trained_word_count(scorer):
    pairs = pairs_for(scorer)
    ctl = words_control(scorer, pairs)
    for (base, run), r in zip(pairs, ctl.records):
        assert r["n_words"] <= run["n_words"]
        assert base["caption"].startswith(r["caption"])
    assert ctl.mismatched == 0


def test_compare_says_the_gain_is_length_when_trained_equals_the_cut_base(scorer):
    base = [rec(scorer, str(i), "A dog and a cat on a bed.", ["dog", "bed"]) for i in range(30)]
    run = [rec(scorer, str(i), "A dog", ["dog", "bed"]) for i in range(30)]
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", list(zip(base, run)), 200, 0)
    assert c.values["objects"]["chair_i"] == c.values["run"]["chair_i"] == 0
    assert c.deltas["run-base"]["chair_i"].delta == pytest.approx(-1 / 3)
    s = summary_sentence(c)
    assert "CHAIRi fell 33.3 points" in s and "falls 33.3" in s and "most of the gain is shorter captions" in s


def test_compare_says_better_objects_when_trained_swaps_the_hallucination(scorer):
    gt = ["dog", "bed"]
    base = [rec(scorer, str(i), "A cat and a dog on a bed.", gt) for i in range(30)]
    run = [rec(scorer, str(i), "A dog and a bed.", gt) for i in range(30)]  # 2 objects, both correct
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", list(zip(base, run)), 200, 0)
    # base cut to 2 objects: "A cat and a dog" -> CHAIRi 1/2; trained 0
    assert c.values["objects"]["chair_i"] == pytest.approx(0.5)
    gap = c.deltas["run-objects"]["chair_i"]
    assert gap.delta == pytest.approx(-0.5)
    assert "names better objects" in summary_sentence(c)


def test_a_different_pipeline_is_refused_not_silently_rescored(scorer):
    """Records written with the refined synonym list do not re-score with coco2018: no control, a note."""
    refined = ChairScorer("objhal_refined", "2018")
    cap = "A pedestrian and his brother walk past a coffee table."
    base = [{"id": str(i), **refined.score_caption(cap, ["person"])} for i in range(3)]
    if check_rescoring(scorer, [(b, b) for b in base]) == 0:
        pytest.skip("the two synonym lists agree on this caption")
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", [(b, b) for b in base], 50, 0)
    assert not c.controls and any("does not reproduce" in n for n in c.notes)


def test_judge_records_keep_the_first_k_extracted_mentions():
    base = {"id": "1", "caption": "x", "mentioned": ["dog", "cat", "bed"], "words": ["dog", "cat", "bed"],
            "hallucinated": ["cat"], "correct_mentions": ["dog", "bed"], "gt_objects": ["dog", "bed"], "n_words": 9}
    cut = first_mentions(base, 2)
    assert cut["mentioned"] == ["dog", "cat"] and cut["hallucinated"] == ["cat"] and cut["correct_mentions"] == ["dog"]
    entry = {"task": {"name": "object_halbench", "extraction": "judge", "options": {}}}
    assert scorer_for("object_halbench", entry)[0] is None


def test_tables_and_json_carry_the_same_numbers(scorer):
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", pairs_for(scorer) * 5, 100, 0)
    t = control_table(c, 100)
    row = next(r for r in t.rows if r[0].startswith("CHAIRi"))
    assert row[1] == f"{100 * c.values['base']['chair_i']:.2f}" and row[2] == "50.00"
    j = comparison_json(c)
    assert j["values"]["objects"]["chair_i"] == pytest.approx(0.5)
    assert j["deltas"]["run-objects"]["chair_i"]["ci"] is not None and j["summary"] == summary_sentence(c)
    assert length_table(c, 100).rows[2][0].startswith("words")


def test_opera_pipeline_control(tmp_path):
    try:
        opera = ChairScorer("coco2018", "opera")
        opera.extract("A dog.")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")
    base = rec(opera, "1", "Two dogs are lying next to three cats on the couch.", ["dog", "couch"])
    assert truncate_to_objects(opera, base["caption"], 1) == "Two dogs"
    entry = {"task": {"name": "chair", "variant": "opera", "synonyms": "coco2018", "options": {}}}
    assert scorer_for("chair", entry)[1] == "ChairScorer(synonyms='coco2018', pipeline='opera')"


def test_compare_says_all_of_the_gain_is_length_when_the_cut_base_beats_the_trained_run(scorer):
    gt = ["dog", "bed"]
    base = [rec(scorer, str(i), "A dog, a bed, a cat, a car and a cup.", gt) for i in range(30)]  # 3/5 wrong
    run = [rec(scorer, str(i), "A dog and a cat.", gt) for i in range(30)]  # 1/2 wrong: CHAIRi fell 10 points
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", list(zip(base, run)), 200, 0)
    assert c.values["objects"]["chair_i"] == 0  # "A dog, a bed"
    s = summary_sentence(c)
    assert "CHAIRi fell 10.0 points" in s and "falls 60.0" in s and "all of the gain is shorter captions" in s


def test_a_scorer_that_fails_on_first_use_becomes_a_note(scorer, monkeypatch):
    """NLTK data missing on the machine that builds the report: the report still builds, without the control."""
    def broken(self, caption):
        raise LookupError("Resource wordnet not found")

    base = [rec(scorer, str(i), "A dog and a cat.", ["dog"]) for i in range(3)]
    run = [rec(scorer, str(i), "A dog.", ["dog"]) for i in range(3)]
    monkeypatch.setattr(ChairScorer, "analyze", broken)
    c = compare("chair", "chair", CHAIR_2018, "base", "dpo", list(zip(base, run)), 50, 0)
    assert not c.controls and "wordnet not found" in c.notes[0]
    assert c.deltas["run-base"]["objects"].delta == pytest.approx(-1.0)  # the length deltas need no scorer
