"""Build POPE question files from any COCO-format instances file (RUCAIBox/POPE main.py + utils.py).

Same procedure as the official builder:
- per image, the object list is its annotated category names, unique, in annotation order;
- images with at least `n_per_image` objects are candidates; `n_images` of them are sampled;
- object frequencies and co-occurrence lists (sorted by count, ties in first-seen order) are computed over
  the sampled images and written as <dataset>_ground_truth_objects.json / <dataset>_co_occur.json;
- for each image, the first `n_per_image` objects are positives ("yes"); after each positive comes one
  negative ("no") that is neither in the image nor already asked about:
  random = uniform over all objects; popular = the most frequent remaining object; adversarial = the
  object co-occurring most often with that positive; popular/adversarial fall back to random when no
  candidate is left;
- JSONL {question_id, image, text, label}, question ids from 1, one file per split.
Differences, on purpose: sampling uses `random.Random(seed)` streams (the official code uses the global
`random` without a seed, so its files cannot be regenerated), images are ordered by id before sampling,
and the article is fixed ("an apple"); the official `template.replace("a", "an")` also turned "image" into
"imange", the typo in the older released files.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from halbench.errors import DataError

SPLITS = ("random", "popular", "adversarial")
TEMPLATE = "Is there a {} in the image?"


def _image_objects(instances_json: str | Path) -> tuple[dict[int, list[str]], dict[int, str]]:
    path = Path(instances_json)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read COCO instances file ({e})", path=path) from e
    if not all(k in coco for k in ("images", "annotations", "categories")):
        raise DataError("not a COCO instances file (needs images, annotations, categories)", path=path)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    objects: dict[int, list[str]] = {}
    for ann in coco["annotations"]:
        objs = objects.setdefault(ann["image_id"], [])
        if names[ann["category_id"]] not in objs:
            objs.append(names[ann["category_id"]])
    return objects, files


def question_text(obj: str, template: str = TEMPLATE) -> str:
    if obj[:1] in ("a", "e", "i", "o", "u"):
        template = template.replace(" a {}", " an {}")
    return template.format(obj)


def co_occurrence(images: list[list[str]]) -> dict[str, list[str]]:
    counts: dict[str, Counter] = {}
    for objs in images:
        for o in objs:
            c = counts.setdefault(o, Counter())
            for other in objs:
                if other != o:
                    c[other] += 1
    # sorted() is stable, so equal counts keep first-seen order, like the official dict-based code
    return {o: [k for k, _ in sorted(c.items(), key=lambda x: x[1], reverse=True)] for o, c in counts.items()}


def _negative(strategy: str, pos: str, objs: list[str], asked: list[str], popular: list[str],
              co: dict[str, list[str]], rng: random.Random, all_objects: list[str]) -> str:
    ranked = popular if strategy == "popular" else co.get(pos, []) if strategy == "adversarial" else []
    for cand in ranked:
        if cand not in asked and cand not in objs:
            return cand
    if all(o in asked or o in objs for o in all_objects):
        raise DataError(f"no negative object left for an image with {len(objs)} objects")
    while True:  # official: random.choice over first-seen object order until an unused absent one comes up
        cand = rng.choice(all_objects)
        if cand not in asked and cand not in objs:
            return cand


def build_split(strategy: str, images: list[tuple[str, list[str]]], n_per_image: int, rng: random.Random,
                template: str = TEMPLATE) -> list[dict[str, Any]]:
    freq = Counter(o for _, objs in images for o in objs)
    popular = [o for o, _ in sorted(freq.items(), key=lambda x: x[1], reverse=True)]
    co = co_occurrence([objs for _, objs in images])
    rows: list[dict[str, Any]] = []
    for file_name, objs in images:
        asked: list[str] = []
        for pos in objs[:n_per_image]:
            asked.append(pos)
            rows.append({"image": file_name, "text": question_text(pos, template), "label": "yes"})
            neg = _negative(strategy, pos, objs, asked, popular, co, rng, list(freq))
            asked.append(neg)
            rows.append({"image": file_name, "text": question_text(neg, template), "label": "no"})
    return [{"question_id": i, **r} for i, r in enumerate(rows, 1)]


def build_pope(instances_json: str | Path, out_dir: str | Path, n_images: int = 500, n_per_image: int = 3,
               seed: int = 0, dataset: str = "coco", splits=SPLITS, template: str = TEMPLATE) -> dict[str, Path]:
    """Write <dataset>_pope_<split>.json for each split (+ frequency/co-occurrence files); {split: path}."""
    objects, files = _image_objects(instances_json)
    candidates = sorted(i for i, objs in objects.items() if len(objs) >= n_per_image)
    if len(candidates) < n_images:
        raise DataError(f"only {len(candidates)} images have >= {n_per_image} objects; {n_images} requested",
                        path=instances_json)
    chosen = random.Random(seed).sample(candidates, n_images)
    images = [(files[i], objects[i]) for i in chosen]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    freq = Counter(o for _, objs in images for o in objs)
    (out / f"{dataset}_ground_truth_objects.json").write_text(json.dumps(dict(freq)))
    (out / f"{dataset}_co_occur.json").write_text(json.dumps(co_occurrence([o for _, o in images])))
    paths = {}
    for k, split in enumerate(splits):
        if split not in SPLITS:
            raise DataError(f"unknown POPE split {split!r}; choose from {', '.join(SPLITS)}")
        rows = build_split(split, images, n_per_image, random.Random(seed * 1009 + k + 1), template)
        paths[split] = out / f"{dataset}_pope_{split}.json"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths
