"""build_pope: POPE's three negative-sampling strategies on a COCO-format file, written in the official format."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from halbench.errors import DataError
from halbench.tasks.pope import build_pope, load_pope
from halbench.tasks.pope_builder import co_occurrence, question_text

CATS = ["person", "dog", "car", "apple", "umbrella", "bus", "cat", "chair", "cup", "oven", "kite", "bed"]


def _instances(tmp_path: Path, n_images: int = 40, seed: int = 1) -> Path:
    rng = random.Random(seed)
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"})
        k = rng.randint(2, 6)  # some images have fewer than 3 objects and must be skipped
        objs = ["person"] * (rng.random() < 0.7) + rng.sample(CATS[1:], k)
        for o in objs:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": CATS.index(o) + 1})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": j + 1, "name": c} for j, c in enumerate(CATS)]}))
    return path


def _objects(inst: Path) -> dict[str, list[str]]:
    coco = json.loads(inst.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out: dict[str, list[str]] = {}
    for a in coco["annotations"]:
        objs = out.setdefault(files[a["image_id"]], [])
        if names[a["category_id"]] not in objs:
            objs.append(names[a["category_id"]])
    return out


def test_build_writes_official_format_with_three_strategies(tmp_path):
    inst = _instances(tmp_path)
    paths = build_pope(inst, tmp_path / "out", n_images=20, seed=3)
    assert set(paths) == {"random", "popular", "adversarial"}
    objects = _objects(inst)
    freq = json.loads((tmp_path / "out" / "coco_ground_truth_objects.json").read_text())
    co = json.loads((tmp_path / "out" / "coco_co_occur.json").read_text())
    popular = [o for o, _ in sorted(freq.items(), key=lambda x: x[1], reverse=True)]
    for split, path in paths.items():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["question_id"] for r in rows] == list(range(1, 121))
        assert all(set(r) == {"question_id", "image", "text", "label"} for r in rows)
        assert [r["label"] for r in rows[:2]] == ["yes", "no"] and Counter(r["label"] for r in rows)["no"] == 60
        for img in {r["image"] for r in rows}:
            asked = [r for r in rows if r["image"] == img]
            objs = objects[img]
            pos = [r["text"] for r in asked if r["label"] == "yes"]
            assert pos == [question_text(o) for o in objs[:3]]  # first three objects, in order
            negs = [r["text"] for r in asked if r["label"] == "no"]
            assert len(set(negs)) == 3 and not set(negs) & {question_text(o) for o in objs}
            if split == "popular":
                absent = [o for o in popular if o not in objs]
                assert negs == [question_text(o) for o in absent[:3]]
            if split == "adversarial":
                first = next(o for o in co[objs[0]] if o not in objs)
                assert negs[0] == question_text(first)
    assert len(load_pope(tmp_path / "out")) == 360


def test_build_is_seeded_and_fixes_the_article(tmp_path):
    inst = _instances(tmp_path)
    a = build_pope(inst, tmp_path / "a", n_images=15, seed=7)["random"].read_bytes()
    b = build_pope(inst, tmp_path / "b", n_images=15, seed=7)["random"].read_bytes()
    c = build_pope(inst, tmp_path / "c", n_images=15, seed=8)["random"].read_bytes()
    assert a == b != c
    assert question_text("apple") == "Is there an apple in the image?"  # the official code wrote "imange"
    assert question_text("dog") == "Is there a dog in the image?"


def test_co_occurrence_ties_keep_first_seen_order():
    assert co_occurrence([["a", "b", "c"], ["a", "c"]]) == {"a": ["c", "b"], "b": ["a", "c"], "c": ["a", "b"]}


def test_build_errors(tmp_path):
    inst = _instances(tmp_path, n_images=5)
    with pytest.raises(DataError, match="images have >= 3 objects; 50 requested"):
        build_pope(inst, tmp_path / "o", n_images=50)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match="not a COCO instances file"):
        build_pope(bad, tmp_path / "o")
