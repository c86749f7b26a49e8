"""CHAIR scorer rules, metrics, ground-truth loading, prediction scoring and the task (halbench.tasks.chair)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halbench.errors import DataError, HalbenchError, NotAvailableError
from halbench.schema import Response
from halbench.tasks.chair import (
    ChairScorer, ChairTask, SynonymTable, chair_metrics, image_id_of, load_gt, score_caption_file,
    truncate_incomplete,
)


@pytest.fixture(scope="module")
def opera():
    try:
        return ChairScorer("coco2018", "opera")
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


@pytest.fixture(scope="module")
def s2018():
    return ChairScorer("coco2018", "2018")


def classes(scorer, caption):
    return [m.cls for m in scorer.extract(caption)]


def test_mentions_carry_surface_words_and_spans(opera):
    caption = "Two men walk their dogs past a wine glasses display. A baby elephant sleeps."
    ms = opera.extract(caption)
    # "men" is no mention: WordNet's lemmatize("men", "n") keeps "men" (a quirk of the official pipeline)
    assert [(m.word, m.cls, m.lemma) for m in ms] == [
        ("dogs", "dog", "dog"), ("wine glasses", "wine glass", "wine glass"), ("baby elephant", "elephant", "elephant")]
    assert all(caption[m.start:m.end] == m.word for m in ms)


@pytest.mark.parametrize("caption, expected", [
    ("A toilet seat is up.", ["toilet"]),
    ("The seat of the toilet is up.", ["toilet"]),  # every "seat" goes when "toilet" is there
    ("A man on a seat.", ["person", "chair"]),
    ("A passenger train and a passenger jet.", ["train", "airplane"]),
    ("He wears a bow tie.", ["tie"]),
    ("The train track is empty.", []),  # OPERA's extra double word swallows "train"
    ("A motor bike.", []),  # coco2018 stores " motor bike" with a leading space: never matches
])
def test_official_special_cases(opera, caption, expected):
    assert classes(opera, caption) == expected


def test_pipelines_differ_where_the_official_code_does(opera, s2018):
    assert classes(s2018, "The train track is empty.") == ["train"]  # no 'train track' in 2018
    assert classes(s2018, "A bus and two buses.") == ["bus"]  # pattern: "bus" -> "bu"
    assert classes(opera, "A bus and two buses.") == ["bus", "bus"]
    assert classes(s2018, "A wine glass.") == ["wine glass"]  # "glass" -> "glas" -> 'wine glas' rule
    refined = ChairScorer("objhal_refined", "2018")
    assert classes(refined, "A motor bike and a pedestrian.") == ["motorcycle", "person"]


def test_synonym_table_sources(tmp_path):
    assert len(SynonymTable.load("coco2018").classes) == 80
    assert SynonymTable.load("objhal_refined").inverse["pedestrian"] == "person"
    custom = tmp_path / "syn.txt"
    custom.write_text("dog, puppy\nkite\n")
    assert ChairScorer(custom, "2018").extract("two puppies fly a kite")[0].cls == "dog"
    with pytest.raises(DataError, match="synonym list not found"):
        SynonymTable.load(tmp_path / "missing.txt")
    with pytest.raises(HalbenchError, match="unknown CHAIR pipeline"):
        ChairScorer("coco2018", "spacy")


def test_score_caption_record_and_metrics(opera):
    r1 = opera.score_caption("A man rides a horse next to a dog.", {"person", "horse", "car"})
    assert r1["mentioned"] == ["person", "horse", "dog"] and r1["words"] == ["man", "horse", "dog"]
    assert r1["hallucinated"] == ["dog"] and r1["correct_mentions"] == ["person", "horse"]
    assert r1["covered_gt_objects"] == ["horse", "person"] and r1["n_words"] == 10
    r2 = opera.score_caption("A car.", {"car"})
    m = chair_metrics([r1, r2, {"error": "timeout"}, {**r2, "skipped": "empty caption"}])
    assert (m["n_captions"], m["n_hallucinated_captions"], m["n_mentions"], m["n_hallucinated_mentions"]) == (2, 1, 4, 1)
    assert m["chair_s"] == 0.5 and m["chair_i"] == 0.25 and m["recall"] == 3 / 4 and m["len"] == (10 + 3) / 2
    assert (m["n_samples"], m["n_errors"], m["n_skipped"]) == (4, 1, 1)
    assert chair_metrics([])["chair_i"] is None  # undefined, not a made-up 0


def test_image_ids_and_truncation():
    assert image_id_of("COCO_val2014_000000012345.jpg") == 12345 == image_id_of("000000012345.jpg")
    assert image_id_of(7) == 7 and image_id_of("abc") == "abc"
    assert truncate_incomplete("A dog. A cat sits on") == "A dog."
    assert truncate_incomplete("A dog sits on") == "A dog sits on"


def _coco_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ann"
    d.mkdir(parents=True)
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}]
    inst = {"images": images, "categories": cats, "annotations": [
        {"id": 1, "image_id": 1, "category_id": 18}, {"id": 2, "image_id": 2, "category_id": 3}]}
    caps = {"images": images, "annotations": [
        {"id": 1, "image_id": 1, "caption": "A woman walks her puppy."},
        {"id": 2, "image_id": 2, "caption": "A parked sedan."}]}
    (d / "instances_val2014.json").write_text(json.dumps(inst))
    (d / "captions_val2014.json").write_text(json.dumps(caps))
    return d


def test_load_gt_sources(tmp_path, opera, capsys):
    coco = load_gt(_coco_dir(tmp_path))
    assert coco == {1: {"dog", "person"}, 2: {"car"}, 3: set()}
    assert capsys.readouterr().out == ""  # pycocotools chatter must not reach stdout (--json)
    assert load_gt(_coco_dir(tmp_path / "x"), image_ids=[2]) == {2: {"car"}}
    p1, p2 = tmp_path / "gt_part1of2.json", tmp_path / "gt_part2of2.json"
    p1.write_text(json.dumps({"1": ["dog"]}))
    p2.write_text(json.dumps({"2": ["car"]}))
    assert load_gt(p1) == {1: {"dog"}, 2: {"car"}}
    assert load_gt([p2]) == {2: {"car"}}
    p2.unlink()
    with pytest.raises(DataError, match="part gt_part2of2.json is missing"):
        load_gt(p1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": ["dog"],\n oops}')
    with pytest.raises(DataError, match=r"bad.json:2: malformed JSON"):
        load_gt(bad)


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_caption_file_bad_input(tmp_path, opera):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["dog"], "2": ["car"]}))
    ok = _write(tmp_path / "p.jsonl", [{"image_id": "COCO_val2014_000000000001.jpg", "caption": "A dog and a cat."},
                                      {"image_id": 2, "caption": "  "}])
    metrics, recs = score_caption_file(ok, gt=gt)
    assert metrics["n_captions"] == 1 and metrics["n_skipped"] == 1 and metrics["skipped"] == [
        {"line": 2, "reason": "empty caption"}]
    assert recs[0]["hallucinated"] == ["cat"]
    dup = _write(tmp_path / "d.jsonl", [{"image_id": 1, "caption": "x"}, {"image_id": "1", "caption": "y"}])
    with pytest.raises(DataError, match=r"d.jsonl:2: image_id 1 already on line 1"):
        score_caption_file(dup, gt=gt)
    missing = _write(tmp_path / "m.jsonl", [{"image_id": 9, "caption": "A dog."}])
    with pytest.raises(DataError, match=r"m.jsonl:1: image_id 9 has no ground truth"):
        score_caption_file(missing, gt=gt)
    nokey = _write(tmp_path / "n.jsonl", [{"image": 1, "caption": "A dog."}])
    with pytest.raises(DataError, match=r"n.jsonl:1: expected an object with image_id"):
        score_caption_file(nokey, gt=gt)
    keys = ChairTask.score_predictions(ok, gt=str(gt))
    for k in ("chair_s", "chair_i", "recall", "len", "n_captions", "n_hallucinated_captions", "n_mentions",
              "n_hallucinated_mentions", "n_gt_objects", "n_covered_gt_objects"):
        assert k in keys
    assert all(isinstance(keys[k], int) for k in ("n_captions", "n_mentions", "n_gt_objects"))


def test_task_on_a_coco_folder(tmp_path, opera):
    root = tmp_path / "val2014"
    root.mkdir()
    for i in (1, 2):
        (root / f"COCO_val2014_{i:012d}.jpg").write_bytes(b"jpg")
    (tmp_path / "list.txt").write_text("1\nCOCO_val2014_000000000002.jpg\n")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"1": ["dog"], "2": ["car"], "3": ["cat"]}))
    task = ChairTask(image_root=str(root), image_list=str(tmp_path / "list.txt"), gt=str(gt), protocol="chair-64")
    samples = task.samples()
    assert [s["image_id"] for s in samples] == [1, 2]
    req = task.request(samples[0])
    assert req.prompt == "Please describe this image in detail." and req.generation.max_new_tokens == 64
    assert req.image.endswith("COCO_val2014_000000000001.jpg")
    rec = task.score(samples[0], Response(text="A dog. A cat sits on the"))
    assert rec["caption"] == "A dog." and rec["hallucinated"] == []
    metrics = task.aggregate([rec, task.score(samples[1], Response(text="A bus."))])
    assert metrics["chair_s"] == 0.5 and metrics["n_samples"] == 2
    assert {p.name for p in task.data_files()} == {"synonyms.txt", "list.txt", "gt.json"}
    (tmp_path / "g2.json").write_text(json.dumps({"1": ["dog"]}))
    with pytest.raises(DataError, match="1 image.s. have no ground truth, e.g. .2."):
        ChairTask(image_root=str(root), image_list=str(tmp_path / "list.txt"), gt=str(tmp_path / "g2.json")).samples()


def test_registry_builds_the_2018_variant_without_loading_nltk():
    from halbench.registry import make_task

    task = make_task("chair:2018", {"protocol": "chair500-512"})
    assert task.variant == "2018" and task._scorer is None  # NLTK data loads on first use only
    assert task.scorer.pipeline == "2018"
    with pytest.raises(HalbenchError, match="unknown CHAIR protocol"):
        make_task("chair", {"protocol": "chair-1000"})
