"""MMHal-style world questions and the offline rule judge (a tiny world generated in a temp dir)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from halbench.evaluator import evaluate
from halbench.judges import JudgeRequest
from halbench.tasks.mmhal import MMHalTask
from halbench.tasks.world_mmhal import TYPES, build_questions, rule_verdict, world_samples
from tests.test_mmhal import ScriptedVLM

pytest.importorskip("nltk")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 60-image world written like `halbench world build` writes its val split (no models needed here)."""
    from halbench.world import World
    from halbench.world.generate import generate_split, write_coco

    root = tmp_path_factory.mktemp("world")
    write_coco(generate_split("val", 60, seed=0, progress=False), root, progress=False)
    return World(root)


def _rate(sample, response):
    text = rule_verdict(JudgeRequest(id=sample["id"], prompt="", fields={"sample": sample, "response": response}))
    assert text.startswith("Rating: ")
    return int(text.split()[1].rstrip(","))


def _sample(qtype, facts, gt, question="q"):
    return {"id": "s", "question_type": qtype, "facts": facts, "image_content": gt, "question": question}


def test_questions_cover_every_type_and_are_grounded(world):
    samples = world_samples(n=70, seed=0, world=world)
    assert Counter(s["question_type"] for s in samples) == {t: 10 for t in TYPES}
    assert len({s["id"] for s in samples}) == 70 and all(Path(s["image"]).is_file() for s in samples)
    gt = json.loads(Path(world.gt_objects_json).read_text())
    for s in samples:
        assert s["image_content"] == sorted(set(gt[str(s["image_id"])]))
        f = s["facts"]
        if f["kind"] == "absent" or (f["kind"] == "yesno" and f["answer"] == "no"):
            assert f["object"] not in s["image_content"]
        if f["kind"] == "count":
            assert gt[str(s["image_id"])].count(f["object"]) == f["answer"]
    assert build_questions(json.loads(Path(world.instances_json).read_text()), 20, 0) == \
        build_questions(json.loads(Path(world.instances_json).read_text()), 20, 0)


def test_a_model_that_repeats_the_standard_answer_is_rated_5(world):
    for s in world_samples(n=35, seed=1, world=world):
        assert _rate(s, s["gt_answer"]) == 5, (s["question"], s["gt_answer"])


@pytest.mark.parametrize("qtype,facts,gt,response,rating", [
    ("existence", {"kind": "yesno", "answer": "yes", "object": "dog"}, ["dog"], "Yes, there is a dog.", 5),
    ("existence", {"kind": "yesno", "answer": "yes", "object": "dog"}, ["dog"], "No, there is no dog.", 0),
    ("existence", {"kind": "yesno", "answer": "yes", "object": "dog"}, ["dog"], "Yes, a dog and a bus.", 2),
    ("existence", {"kind": "yesno", "answer": "no", "object": "cat"}, ["dog"], "No, there is no cat.", 5),
    ("adversarial", {"kind": "absent", "object": "pizza"}, ["dog"], "There is no pizza in the image.", 5),
    ("adversarial", {"kind": "absent", "object": "pizza"}, ["dog"], "The pizza is red.", 0),
    ("counting", {"kind": "count", "answer": 2, "object": "cup"}, ["cup"], "There are two cups.", 5),
    ("counting", {"kind": "count", "answer": 2, "object": "cup"}, ["cup"], "I see 3 cups.", 0),
    ("counting", {"kind": "count", "answer": 2, "object": "cup"}, ["cup"], "Some cups.", 3),
    ("relation", {"kind": "choice", "answer": "left", "object": "car"}, ["car", "bus"], "To the left.", 5),
    ("relation", {"kind": "choice", "answer": "left", "object": "car"}, ["car", "bus"], "On the right side.", 0),
    ("attribute", {"kind": "choice", "answer": "lower", "object": "cup"}, ["cup"], "At the bottom.", 5),
    ("comparison", {"kind": "larger", "answer": "horse", "other": "person"}, ["horse", "person"],
     "The person is smaller than the horse.", 5),
    ("comparison", {"kind": "larger", "answer": "horse", "other": "person"}, ["horse", "person"],
     "The man is larger than the horse.", 0),
    ("holistic", {"kind": "describe"}, ["dog", "person"], "A man walks his dog.", 5),
    ("holistic", {"kind": "describe"}, ["dog", "person", "car", "bus"], "A dog.", 4),
    ("holistic", {"kind": "describe"}, ["dog", "person"], "A dog next to a car.", 2),
    ("holistic", {"kind": "describe"}, ["dog", "person"], "A cat.", 1),
    ("holistic", {"kind": "describe"}, ["dog", "person"], "An image.", 3),
])
def test_rule_ratings(qtype, facts, gt, response, rating):
    assert _rate(_sample(qtype, facts, gt), response) == rating


@pytest.mark.parametrize("extra,avg,halluc", [("", 5.0, 0.0), (" I also see a toothbrush.", 2.0, 1.0)])
def test_world_run_with_the_rule_judge(world, tmp_path, extra, avg, halluc):
    task = MMHalTask(world=str(world.root), n=28, max_judge_calls=3)  # the free rule judge is not capped
    answers = {s["id"]: s["gt_answer"] + extra for s in task.samples()}  # toothbrush: never in the world
    res = evaluate(ScriptedVLM(lambda r: answers[r.id]), [task], tmp_path / "run", batch_size=8, progress=False)
    m = res["tasks"]["mmhal"]["metrics"]
    assert m["avg_score"] == avg and m["hallucination_rate"] == halluc and m["n_judged"] == 28
    assert {f"score_{t}" for t in TYPES} <= set(m) and m["judge_calls"] == 28
    recs = [json.loads(x) for x in (tmp_path / "run/samples/mmhal.jsonl").read_text().splitlines()]
    assert {r["judge_model"] for r in recs} == {"rule:mmhal-world@v1"}
    assert res["tasks"]["mmhal"]["task"]["judge"]["judge"] == "rule:mmhal-world@v1"
