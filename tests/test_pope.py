"""POPE answer parsing, metrics, question files (both released versions) and prediction scoring."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from halbench.errors import DataError, HalbenchError
from halbench.schema import Response
from halbench.tasks.pope import PopeTask, load_pope, parse_answer, pope_metrics, score_answer_file

DATA = Path(__file__).parent / "data" / "pope"
REFDATA = Path(__file__).resolve().parents[2] / "shared" / "refdata" / "pope"
COLUMNS = {"official": "pope_official_evaluate_py", "opera": "opera_pope_eval_recorder",
           "lmms-eval": "lmms_eval_pope", "vlmevalkit": "vlmevalkit_yorn_extraction"}
CASES = [json.loads(line) for line in (DATA / "answer_parsing_cases.jsonl").read_text().splitlines()]


def _expected(label: str) -> str:
    # lmms-eval keeps a non-yes/no answer as the string itself ("other:<text>"); VLMEvalKit says Unknown
    return "other" if label.startswith("other:") or label == "Unknown" else label.lower()


@pytest.mark.parametrize("variant", list(COLUMNS))
def test_every_reference_case_for_every_variant(variant):
    assert len(CASES) == 46
    for case in CASES:
        assert case["pope_official_evaluate_py"] == case["llava_eval_pope_py"]
        assert parse_answer(case["answer"], variant) == _expected(case[COLUMNS[variant]]), case["answer"]


def test_unknown_variant():
    with pytest.raises(HalbenchError, match="unknown POPE parsing variant"):
        parse_answer("yes", "llava")


def _rec(split, label, pred):
    return {"split": split, "label": label, "pred": pred}


def test_metrics_per_split_mean_and_counts():
    recs = ([_rec("random", "yes", "yes")] * 3 + [_rec("random", "no", "yes")] + [_rec("random", "no", "no")] * 2
            + [_rec("random", "yes", "no"), _rec("random", "yes", "other")]
            + [_rec("popular", "yes", "yes"), _rec("popular", "no", "no")] + [{"split": "popular", "error": "x"}])
    m = pope_metrics(recs)
    assert (m["random/tp"], m["random/fp"], m["random/tn"], m["random/fn"], m["random/n_other"]) == (3, 1, 2, 1, 1)
    assert m["random/accuracy"] == 5 / 8 and m["random/precision"] == 3 / 4 and m["random/recall"] == 3 / 4
    assert m["random/f1"] == pytest.approx(0.75) and m["random/yes_ratio"] == 4 / 8  # from predictions
    assert m["popular/accuracy"] == 1.0 and m["accuracy"] == (5 / 8 + 1.0) / 2  # LLaVA-style mean over splits
    assert (m["tp"], m["n_other"], m["n_samples"], m["n_errors"], m["n_splits"]) == (4, 1, 11, 1, 2)
    assert pope_metrics([_rec("random", "no", "no")])["precision"] is None  # undefined, not 0


def test_both_released_versions_load_from_test_prefixes():
    current, old = load_pope(DATA / "current"), load_pope(DATA / "v_e3e3926")
    assert len(current) == len(old) == 180
    assert {q["split"] for q in current} == {"random", "popular", "adversarial"}
    assert sum("imange" in q["text"] for q in old) > 0 == sum("imange" in q["text"] for q in current)
    combined = load_pope(DATA / "v_e3e3926" / "llava_pope_test.jsonl")
    assert Counter(q["split"] for q in combined) == {"random": 60, "popular": 60, "adversarial": 60}
    by_split = {s: [q["label"] for q in old if q["split"] == s] for s in ("random", "adversarial")}
    for s, labels in by_split.items():  # labels attached in order from coco_pope_<split>.json
        assert [q["label"] for q in combined if q["split"] == s] == labels
    assert len(load_pope(DATA / "current", splits=("popular",))) == 60


def test_combined_file_refuses_labels_of_another_version(tmp_path):
    (tmp_path / "llava_pope_test.jsonl").write_bytes((DATA / "v_e3e3926" / "llava_pope_test.jsonl").read_bytes())
    for f in (DATA / "current").glob("*.json"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match="does not match coco_pope_"):
        load_pope(tmp_path / "llava_pope_test.jsonl")


@pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata/pope not present")
def test_full_released_files():
    current = load_pope(REFDATA)
    old = load_pope(REFDATA / "v_e3e3926_llava_opera")
    combined = load_pope(REFDATA / "v_e3e3926_llava_opera" / "llava_pope_test.jsonl")
    assert len(current) == 9000 and len(old) == len(combined) == 8910
    assert Counter((q["split"], q["label"]) for q in old)[("random", "no")] == 1410
    typos = Counter(q["split"] for q in old if "imange" in q["text"])
    assert typos == {"random": 144, "popular": 44, "adversarial": 58}


def _answers(path: Path, questions, text=lambda q: q["label"].capitalize() + ".", **extra) -> Path:
    path.write_text("".join(json.dumps({"question_id": q["question_id"], "text": text(q), **extra}) + "\n"
                            for q in questions))
    return path


def test_score_answer_file_and_bad_input(tmp_path):
    data = DATA / "current" / "coco_pope_random.json"
    qs = load_pope(data)
    perfect = _answers(tmp_path / "a.jsonl", qs)
    m = PopeTask.score_predictions(perfect, data=data)
    assert (m["accuracy"], m["f1"], m["tp"] + m["tn"], m["yes_ratio"]) == (1.0, 1.0, 60, 0.5)
    assert all(isinstance(m[k], int) for k in ("tp", "fp", "tn", "fn"))
    always_yes = _answers(tmp_path / "y.jsonl", qs, text=lambda q: "Yes")
    assert PopeTask.score_predictions(always_yes, data=data)["yes_ratio"] == 1.0
    lines = perfect.read_text().splitlines()
    (tmp_path / "dup.jsonl").write_text("\n".join(lines + lines[:1]) + "\n")
    with pytest.raises(DataError, match=r"dup.jsonl:61: question_id 1 already answered on line 1"):
        score_answer_file(tmp_path / "dup.jsonl", data=data)
    (tmp_path / "unk.jsonl").write_text(lines[0] + "\n" + json.dumps({"question_id": 99999, "text": "no"}) + "\n")
    with pytest.raises(DataError, match=r"unk.jsonl:2: unknown question_id 99999"):
        score_answer_file(tmp_path / "unk.jsonl", data=data)
    (tmp_path / "part.jsonl").write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(DataError, match="50 question.s. have no prediction"):
        score_answer_file(tmp_path / "part.jsonl", data=data)
    with pytest.raises(DataError, match="exists in several splits"):
        score_answer_file(perfect, data=DATA / "current")


def test_predictions_for_another_split_are_caught(tmp_path):
    popular = load_pope(DATA / "current" / "coco_pope_popular.json")
    wrong = tmp_path / "w.jsonl"
    wrong.write_text("".join(json.dumps({"question_id": q["question_id"], "prompt": q["text"], "text": "yes"}) + "\n"
                             for q in popular))
    with pytest.raises(DataError, match="predictions for another split"):
        score_answer_file(wrong, data=DATA / "current" / "coco_pope_random.json")
    # the same questions in the older version (typos, CRLF) are accepted: same question, same label
    m, _ = score_answer_file(wrong, data=DATA / "v_e3e3926" / "coco_pope_popular.json")
    assert m["n_questions_text_checked"] == 60


def test_failed_generations_are_counted_not_scored(tmp_path):
    data = DATA / "current" / "coco_pope_adversarial.json"
    qs = load_pope(data)
    rows = [{"question_id": q["question_id"], "text": "Yes"} for q in qs[1:]]
    rows.append({"question_id": qs[0]["question_id"], "text": None, "error": "CUDA OOM"})
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = PopeTask.score_predictions(tmp_path / "e.jsonl", data=data, variant="lmms-eval")
    assert (m["n_errors"], m["n_samples"], m["adversarial/n"]) == (1, 60, 59)


def test_task_samples_requests_and_records(tmp_path):
    task = PopeTask(variant="opera", data=str(DATA / "v_e3e3926" / "llava_pope_test.jsonl"),
                    image_root=str(tmp_path), splits="random,popular")
    samples = task.samples()
    assert len(samples) == 120 and samples[0]["id"] == f"{samples[0]['split']}/{samples[0]['question_id']}"
    req = task.request(samples[0])
    assert req.prompt.endswith("Answer the question using a single word or phrase.")
    assert req.image == str(tmp_path / samples[0]["image"])
    rec = task.score(samples[0], Response(text="There isn't one."))
    assert rec["pred"] == "no" and rec["image_id"] == 310196 and set(rec) >= {"question_id", "split", "label", "correct"}
    assert [p.name for p in task.data_files()] == ["llava_pope_test.jsonl"]


def test_task_spec_may_name_a_split():
    from halbench.registry import make_task

    task = make_task("pope:adversarial", {"data": str(DATA / "current"), "image_root": "/coco", "parse": "opera"})
    assert task.variant == "opera" and task.splits == ("adversarial",)
    assert {s["split"] for s in task.samples()} == {"adversarial"} and len(task.samples()) == 60
    assert make_task("pope:vlmevalkit", {"data": str(DATA / "current")}).splits == ("random", "popular", "adversarial")
