"""Generate world splits in memory and write them in COCO format.

A split is N rendered images with their objects (category + bbox) and 5 COCO-style captions each. The writer
produces exactly what the COCO tools read:

    instances_<split>.json   {"images", "annotations", "categories"} (category ids = COCO's own ids)
    captions_<split>.json    {"images", "annotations": [{"id", "image_id", "caption"}]}
    gt_objects.json          {str(image_id): sorted class names}: the ground truth for CHAIR (instances
                             only: noisy caption mentions are NOT ground truth, unlike COCO's caption-derived sets)
    images/<file_name>       48x48 PNGs
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from halbench.world.captions import short_captions
from halbench.world.cooccurrence import CooccurrenceTable, default_table
from halbench.world.render import render_scene

# The official COCO category ids of the world's classes (instances_val2014.json "categories").
COCO_IDS = {
    "person": 1, "bicycle": 2, "car": 3, "bus": 6, "truck": 8, "traffic light": 10, "dog": 18, "horse": 19,
    "elephant": 22, "zebra": 24, "giraffe": 25, "cat": 17, "sports ball": 37, "tennis racket": 43,
    "bottle": 44, "cup": 47, "fork": 48, "knife": 49, "spoon": 50, "bowl": 51, "pizza": 59, "cake": 61,
    "chair": 62, "couch": 63, "potted plant": 64, "bed": 65, "dining table": 67, "tv": 72, "laptop": 73,
    "book": 84, "clock": 85, "sink": 81,
}
SUPERCATEGORY = {
    "person": "person", "bicycle": "vehicle", "car": "vehicle", "bus": "vehicle", "truck": "vehicle",
    "traffic light": "outdoor", "dog": "animal", "horse": "animal", "elephant": "animal", "zebra": "animal",
    "giraffe": "animal", "cat": "animal", "sports ball": "sports", "tennis racket": "sports",
    "bottle": "kitchen", "cup": "kitchen", "fork": "kitchen", "knife": "kitchen", "spoon": "kitchen",
    "bowl": "kitchen", "pizza": "food", "cake": "food", "chair": "furniture", "couch": "furniture",
    "potted plant": "furniture", "bed": "furniture", "dining table": "furniture", "tv": "electronic",
    "laptop": "electronic", "book": "indoor", "clock": "indoor", "sink": "appliance",
}
SPLIT_ID_BASE = {"val": 0, "train": 1_000_000, "extra": 2_000_000}


@dataclass
class Split:
    """One generated split held in memory (images as a uint8 array (N, H, W, 3))."""

    name: str
    image_ids: list[int]
    images: np.ndarray
    objects: list[list[tuple[str, list[int]]]]  # per image: (category, [x, y, w, h])
    captions: list[list[tuple[str, str | None]]] = field(default_factory=list)  # (text, noise object)

    def object_names(self, i: int) -> list[str]:
        return [c for c, _ in self.objects[i]]

    def areas(self, i: int) -> list[float]:
        return [float(b[2] * b[3]) for _, b in self.objects[i]]

    def file_name(self, i: int) -> str:
        return f"{self.image_ids[i]:012d}.png"


def generate_split(name: str, n_images: int, seed: int, size: int = 48, noise_scale: float = 1.0,
                   table: CooccurrenceTable | None = None, progress: bool = True) -> Split:
    """Render n_images scenes sampled from COCO co-occurrence statistics, with 5 captions each."""
    table = table or default_table()
    rng = np.random.default_rng([seed, SPLIT_ID_BASE.get(name, 3_000_000)])
    images = np.zeros((n_images, size, size, 3), dtype=np.uint8)
    objects, captions = [], []
    for i in tqdm(range(n_images), desc=f"render {name}", disable=not progress, leave=False):
        while True:  # a scene whose objects did not all fit is redrawn (keeps sets COCO-faithful)
            cats = table.sample_scene(rng)
            img, placed = render_scene(cats, rng, size)
            if len(placed) == len(cats):
                break
        images[i] = img
        objects.append(placed)
        captions.append(short_captions([c for c, _ in placed], [b[2] * b[3] for _, b in placed], table, rng,
                                       noise_scale=noise_scale))
    ids = [SPLIT_ID_BASE.get(name, 3_000_000) + i + 1 for i in range(n_images)]
    return Split(name, ids, images, objects, captions)


def _coco_categories(table: CooccurrenceTable) -> list[dict]:
    return [{"id": COCO_IDS[c], "name": c, "supercategory": SUPERCATEGORY[c]} for c in table.categories]


def write_coco(split: Split, out_dir: str | Path, table: CooccurrenceTable | None = None,
               progress: bool = True) -> dict[str, Path]:
    """Write images + instances/captions/gt_objects json for one split; returns the paths written."""
    from PIL import Image

    table = table or default_table()
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns, caps, gt = [], [], [], {}
    for i, image_id in enumerate(tqdm(split.image_ids, desc=f"write {split.name}", disable=not progress,
                                      leave=False)):
        fn = split.file_name(i)
        Image.fromarray(split.images[i]).save(img_dir / fn, optimize=True)
        h, w = split.images.shape[1:3]
        images.append({"id": image_id, "file_name": fn, "height": h, "width": w})
        for cat, (x, y, bw, bh) in split.objects[i]:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": COCO_IDS[cat],
                         "bbox": [x, y, bw, bh], "area": float(bw * bh), "iscrowd": 0,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
        for text, _ in split.captions[i]:
            caps.append({"id": len(caps) + 1, "image_id": image_id, "caption": text})
        gt[str(image_id)] = sorted(split.object_names(i))
    info = {"description": "halbench embedded world (procedural; COCO category names and co-occurrence)",
            "version": "1.0"}
    paths = {
        "instances": out / f"instances_{split.name}.json",
        "captions": out / f"captions_{split.name}.json",
        "gt_objects": out / "gt_objects.json",
    }
    _dump(paths["instances"], {"info": info, "images": images, "annotations": anns,
                               "categories": _coco_categories(table)})
    _dump(paths["captions"], {"info": info, "images": images, "annotations": caps})
    _dump(paths["gt_objects"], gt)
    return paths


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))
