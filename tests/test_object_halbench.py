"""Object HalBench: rule-extraction parity with the official scorer, the LLM-extraction path over a real HTTP
server (tests/test_judges.py's ChatServer), and the task's data handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halbench.errors import DataError, HalbenchError
from halbench.evaluator import evaluate
from halbench.tasks.object_halbench import (QUESTIONS_FILE, ObjectHalBenchTask, objects_to_mentions,
                                            objhal_metrics, parse_object_list, phrase_words, read_questions,
                                            refined_scorer)
from tests.test_judges import SERVED_ID, ChatServer
from tests.test_mmhal import ScriptedVLM
from tests.test_mmhal_world import world  # noqa: F401 - the tiny-world fixture

ROWS = [json.loads(x) for x in (Path(__file__).parent / "data/judges/objhal_exercise_100.jsonl").open()]


@pytest.fixture(scope="module")
def scorer2018():
    try:
        return refined_scorer("coco2018")  # the exercise run was scored with the 2018 list
    except Exception as e:  # noqa: BLE001 - NLTK data missing
        pytest.skip(f"CHAIR pipeline unavailable: {e}")


def test_rule_extraction_matches_official_output_per_answer(scorer2018):
    records = []
    for row in ROWS:
        rec = scorer2018.score_caption(row["answer"], row["official"]["gt"])
        assert rec["mentioned"] == row["official"]["generated"], row["image_id"]
        assert rec["hallucinated"] == row["official"]["hallucinated"], row["image_id"]
        records.append({"error": None, **rec})
    m = objhal_metrics(records)
    off = [r["official"] for r in ROWS]
    n_with = sum(bool(o["generated"]) for o in off)
    n_h = sum(bool(o["hallucinated"]) for o in off)
    assert m["response_hallucination_rate"] == n_h / n_with and m["response_hallucination_rate_all"] == n_h / 100
    assert m["object_hallucination_rate"] == sum(len(o["hallucinated"]) for o in off) / sum(
        len(o["generated"]) for o in off)
    covered = sum(len({c for c in o["generated"] if c in o["gt"]}) for o in off)
    assert m["recall"] == covered / sum(len(o["gt"]) for o in off)
    assert m["avg_len"] == sum(len(r["answer"].strip().split(" ")) for r in ROWS) / 100


def test_score_predictions_file(scorer2018, tmp_path):
    preds, gt = tmp_path / "answers.jsonl", tmp_path / "gt.json"
    preds.write_text("".join(json.dumps({"image_id": r["image_id"], "answer": r["answer"]}) + "\n" for r in ROWS))
    gt.write_text(json.dumps({str(r["image_id"]): r["official"]["gt"] for r in ROWS}))
    m = ObjectHalBenchTask.score_predictions(str(preds), gt=str(gt), synonyms="coco2018")
    assert m["n_samples"] == 100 and m["n_hallucinated_responses"] == sum(bool(r["official"]["hallucinated"])
                                                                          for r in ROWS)
    gt.write_text(json.dumps({str(r["image_id"]): r["official"]["gt"] for r in ROWS[1:]}))
    with pytest.raises(DataError, match="no ground truth"):
        ObjectHalBenchTask.score_predictions(str(preds), gt=str(gt))


@pytest.mark.parametrize("phrase,words", [
    ("red car", ["car"]), ("dining table", ["dining table"]), ("wooden coffee table", ["coffee table"]),
    ("car seat", ["car seat"]), ("baby elephant", ["elephant"]), ("skis", ["ski"]), ("hot dog", ["hot dog"]),
    ("man in a hat", ["man", "hat"]), ("puppy", ["puppy"]), ("white remote", ["remote"]),
    ("wooden table", ["table"]),
])
def test_phrase_words_follow_the_reference(scorer2018, phrase, words):
    assert phrase_words(phrase, refined_scorer()) == words


def test_objects_to_mentions_keeps_synonyms_once():
    got = objects_to_mentions(["man", "dog", "puppy", "dog", "car seat", "toilet", "seat", "surfboard"],
                              refined_scorer())
    assert got == [("man", "person"), ("dog", "dog"), ("puppy", "dog"), ("toilet", "toilet"),
                   ("surfboard", "surfboard")]


@pytest.mark.parametrize("text,items", [
    ('```json\n["dog", "cat"]\n```', ["dog", "cat"]), ('Sure: ["a"]', ["a"]), ("[]", []),
    ("no list here", None), ('["a", 3]', None), ("[dog, cat]", None),
])
def test_parse_object_list(text, items):
    got, err = parse_object_list(text)
    assert got == items and (err is None) == (items is not None)


def test_packaged_questions_are_the_300_prompts():
    rows = read_questions(QUESTIONS_FILE)
    assert len(rows) == 300 and len({r["image_id"] for r in rows}) == 300
    assert len({r["question"] for r in rows}) == 8


# -- a COCO-style run in a temp folder ------------------------------------------------------------------
@pytest.fixture
def coco(tmp_path):
    from PIL import Image

    images = tmp_path / "val2014"
    images.mkdir()
    rows = ROWS[:6]
    for r in rows:
        Image.new("RGB", (8, 8)).save(images / f"COCO_val2014_{r['image_id']:012d}.jpg")
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"image_id": r["image_id"], "question": r["question"]}) + "\n" for r in rows))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({str(r["image_id"]): r["official"]["gt"] for r in rows}))
    return {"data": str(data), "coco": str(images), "gt": str(gt), "rows": rows}


def test_llm_extraction_over_http(coco, tmp_path):
    gt0 = coco["rows"][0]["official"]["gt"]
    present = gt0[0]
    replies = {0: f"There is a {present} here. [[OBJS {present}|giraffe|wooden table]]",
               1: "A photo. Nothing else. [[OBJS ]]",  # > 3 words: sent; the judge finds nothing
               2: "Just a cat.",  # <= 3 words: not sent, no objects
               3: "Broken judge here [[500]]", 4: "Odd judge reply [[NORATING]]",
               5: f"Many things [[OBJS {coco['rows'][5]['official']['gt'][0]}]]"}
    script = lambda r: replies[int(r.id.rsplit("_", 1)[1])]  # noqa: E731
    server = ChatServer()
    try:
        task = ObjectHalBenchTask(data=coco["data"], coco=coco["coco"], gt=coco["gt"],
                                  judge=f"openai:gpt-4o-mini@{server.url}", judge_cache="off",
                                  judge_timeout=0.5, judge_backoff=0.01, judge_max_retries=1)
        res = evaluate(ScriptedVLM(script), [task], tmp_path / "run", batch_size=6, progress=False)
        http_calls = server.calls
    finally:
        server.close()
    recs = [json.loads(x) for x in (tmp_path / "run/samples/object_halbench.jsonl").read_text().splitlines()]
    assert recs[0]["mentioned"][:2] == [present, "giraffe"] and recs[0]["judge_model"] == SERVED_ID
    assert "giraffe" in recs[0]["hallucinated"] and recs[0]["extracted_objects"][2] == "wooden table"
    assert recs[1]["mentioned"] == [] and recs[1]["judge_text"] is not None
    assert recs[2]["mentioned"] == [] and recs[2]["judge_text"] is None  # never sent
    assert recs[3]["judge_error"] and "mentioned" not in recs[3]
    assert recs[4]["judge_error"] and "no JSON list" in recs[4]["judge_error"]
    m = res["tasks"]["object_halbench"]["metrics"]
    # 3 good replies + [[500]] (one judge call, 2 HTTP attempts) + [[NORATING]] (asked twice)
    assert m["n_judge_failures"] == 2 and m["judge_calls"] == 3 + 1 + 2 and http_calls == 3 + 2 + 2
    assert m["n_with_objects"] == 2 and m["response_hallucination_rate_all"] == pytest.approx(1 / 4)
    assert m["response_hallucination_rate"] == pytest.approx(1 / 2)
    assert res["tasks"]["object_halbench"]["task"]["extraction"] == "judge"


def test_rule_extraction_run(coco, tmp_path):
    answers = {str(i): r["answer"] for i, r in enumerate(coco["rows"])}
    task = ObjectHalBenchTask(data=coco["data"], coco=coco["coco"], gt=coco["gt"], synonyms="coco2018")
    res = evaluate(ScriptedVLM(lambda r: answers[str(int(r.id.rsplit("_", 1)[1]))]), [task], tmp_path / "r",
                   batch_size=4, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "r/samples/object_halbench.jsonl").read_text().splitlines()]
    assert [r["mentioned"] for r in recs] == [r["official"]["generated"] for r in coco["rows"]]
    assert "judge_total" not in res["tasks"]["object_halbench"]["metrics"]


def test_option_errors(coco):
    with pytest.raises(HalbenchError, match="coco=DIR"):
        ObjectHalBenchTask(data=coco["data"])
    task = ObjectHalBenchTask(data=coco["data"], coco=coco["coco"], gt=coco["gt"])
    task._gt = {}
    with pytest.raises(DataError, match="no ground-truth objects"):
        task._gt_of(123)


@pytest.mark.parametrize("extra,rate", [("", 0.0), (" A toothbrush lies nearby.", 1.0)])
def test_world_run_with_rule_extraction(world, tmp_path, extra, rate):  # noqa: F811
    gt = json.loads(Path(world.gt_objects_json).read_text())
    task = ObjectHalBenchTask(world=str(world.root), n=16)
    samples = {s["id"]: s for s in task.samples()}
    assert len({s["question"] for s in samples.values()}) == 8
    script = lambda r: "The image shows " + " and ".join(  # noqa: E731
        f"a {c}" for c in sorted(set(gt[str(samples[r.id]["image_id"])]))) + "." + extra
    res = evaluate(ScriptedVLM(script), [task], tmp_path / "w", batch_size=8, progress=False)
    m = res["tasks"]["object_halbench"]["metrics"]
    assert m["response_hallucination_rate"] == rate and m["recall"] == 1.0 and m["n_samples"] == 16
