"""Derive the embedded world's object statistics from real COCO 2014 ground-truth object sets (one-off).

Reads the OPERA-style ground-truth sets in ../shared/refdata/chair/gt/*.json ({image_id: [class names]},
123,287 COCO 2014 train+val images; derived from COCO annotations, CC BY 4.0) and writes
halbench/world/data/cooccurrence.json: for the world's categories, the number of COCO images holding each
category, the number holding each pair, and the histogram of per-image set sizes, all restricted to those
categories. The package reads only that table at run time, never ../shared.

    python scripts/derive_cooccurrence.py [--gt-dir DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
from pathlib import Path

# 32 COCO categories in five scene families (street, dining/kitchen, living room, animals, sport) so that
# the co-occurrence structure that POPE "popular"/"adversarial" sampling relies on survives the restriction.
CATEGORIES = [
    "person", "car", "truck", "bus", "traffic light", "bicycle",
    "dining table", "chair", "cup", "bottle", "bowl", "knife", "fork", "spoon", "pizza", "cake", "sink",
    "couch", "tv", "laptop", "book", "clock", "potted plant", "bed",
    "dog", "cat", "horse", "giraffe", "zebra", "elephant",
    "sports ball", "tennis racket",
]

MIN_SCENE, MAX_SCENE, MIN_SEEN = 2, 5, 2  # world images hold 2-5 objects; drop once-seen sets

DEFAULT_GT = Path(__file__).resolve().parents[1].parent / "shared" / "refdata" / "chair" / "gt"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "halbench" / "world" / "data" / "cooccurrence.json"


def load_sets(gt_dir: Path) -> list[list[str]]:
    files = sorted(glob.glob(str(gt_dir / "*.json")))
    if not files:
        raise SystemExit(f"no ground-truth json files in {gt_dir}")
    sets: list[list[str]] = []
    for f in files:
        with open(f) as fh:
            sets.extend(json.load(fh).values())
    return sets


def derive(sets: list[list[str]]) -> dict:
    keep = set(CATEGORIES)
    counts: collections.Counter = collections.Counter()
    pairs: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    scenes: collections.Counter = collections.Counter()
    for objs in sets:
        objs = sorted(set(objs) & keep)
        sizes[len(objs)] += 1
        if MIN_SCENE <= len(objs) <= MAX_SCENE:
            scenes[tuple(CATEGORIES.index(o) for o in objs)] += 1
        counts.update(objs)
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                pairs[(a, b)] += 1
    idx = {c: i for i, c in enumerate(CATEGORIES)}
    matrix = [[0] * len(CATEGORIES) for _ in CATEGORIES]
    for (a, b), n in pairs.items():
        matrix[idx[a]][idx[b]] = matrix[idx[b]][idx[a]] = n
    return {
        "source": "COCO 2014 train+val ground-truth object sets (OPERA-style chair.py, "
                  "../shared/refdata/chair/gt); COCO annotations CC BY 4.0",
        "n_images": len(sets),
        "categories": CATEGORIES,
        "counts": [counts[c] for c in CATEGORIES],
        "pair_counts": matrix,
        "set_size_hist": {str(k): v for k, v in sorted(sizes.items())},
        # Empirical joint distribution: every restricted object set of MIN..MAX objects seen in >= MIN_SEEN
        # COCO images, as [n_images, category indices...], most frequent first.
        "scenes": [[n, *objs] for objs, n in scenes.most_common() if n >= MIN_SEEN],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt-dir", type=Path, default=DEFAULT_GT)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    table = derive(load_sets(args.gt_dir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in table.items() if k != "scenes"}, separators=(",", ":"))
    # one scene per line keeps the file diffable
    scenes = ",\n".join(json.dumps(s, separators=(",", ":")) for s in table["scenes"])
    args.out.write_text(text[:-1] + ',"scenes":[\n' + scenes + "\n]}\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(CATEGORIES)} categories)")


if __name__ == "__main__":
    main()
