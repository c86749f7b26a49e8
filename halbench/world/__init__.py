"""The embedded default world: procedural COCO-format images, a tiny CLIP and a tiny LLaVA VLM.

`default_world()` opens the world shipped in halbench/world/default (validation split + trained models);
`World(root)` opens any world written by `halbench world build --out DIR`. Layout of a world directory:

    world.json                   build recipe, seed, timings, sizes, quality figures (if measured)
    instances_val.json           COCO instances (32 real COCO categories, COCO category ids)
    captions_val.json            5 COCO-style captions per image (some name an absent co-occurring object)
    gt_objects.json              {str(image_id): [class names]} - CHAIR ground truth (instances only)
    images/<id:012d>.png         48x48 RGB images
    pope/coco_pope_{random,popular,adversarial}.json   POPE files (halbench.tasks.pope.build_pope)
    clip/                        CLIPModel + CLIPProcessor (HF directory)
    vlm/                         LlavaForConditionalGeneration + LlavaProcessor (HF directory)
    train/                       optional training split, same layout as the top level (World(root, "train"))

How it is built: see build.py (recipe) and the modules it calls (generate, render, captions, cooccurrence,
clip_train, vlm_train). What it reaches: QUALITY.md.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from halbench.errors import DataError, NotAvailableError

DEFAULT_ROOT = Path(__file__).parent / "default"


class World:
    """A built world on disk; paths are attributes, nothing is loaded until asked."""

    def __init__(self, root: str | Path, split: str = "val"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("world directory not found", path=self.root)
        self.split = split
        data = self.root if split == "val" else self.root / split
        self.data_root = data
        self.vlm_dir = self.root / "vlm"
        self.clip_dir = self.root / "clip"
        self.images_dir = data / "images"
        self.instances_json = data / f"instances_{split}.json"
        self.captions_json = data / f"captions_{split}.json"
        self.gt_objects_json = data / "gt_objects.json"
        self.pope_dir = data / "pope"
        self._files: dict[int, str] | None = None

    def __repr__(self) -> str:
        return f"World({str(self.root)!r}, split={self.split!r})"

    def _instances(self) -> dict:
        try:
            return json.loads(self.instances_json.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read world instances ({e})", path=self.instances_json) from e

    def image_path(self, image_id: int | str) -> Path:
        """Path of an image by COCO image id (the file name recorded in the instances file)."""
        if self._files is None:
            self._files = {int(im["id"]): im["file_name"] for im in self._instances()["images"]}
        try:
            return self.images_dir / self._files[int(image_id)]
        except (KeyError, ValueError) as e:
            raise DataError(f"no image with id {image_id!r} in this world", path=self.instances_json) from e

    def categories(self) -> list[str]:
        """The world's COCO class names, in the instances file's order."""
        return [c["name"] for c in self._instances()["categories"]]

    def image_ids(self) -> list[int]:
        return sorted(int(im["id"]) for im in self._instances()["images"])

    def info(self) -> dict:
        """world.json (recipe, seed, timings, sizes, measured quality); {} when absent."""
        p = self.root / "world.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def with_split(self, split: str) -> "World":
        return World(self.root, split)


@lru_cache(maxsize=1)
def default_world() -> World:
    """The world shipped inside the package (halbench/world/default)."""
    if not (DEFAULT_ROOT / "instances_val.json").is_file():
        raise NotAvailableError(
            f"the embedded default world is missing from this install ({DEFAULT_ROOT}); "
            "rebuild it with `halbench world build --out DIR` and pass --model DIR/vlm"
        )
    return World(DEFAULT_ROOT)


__all__ = ["World", "default_world", "DEFAULT_ROOT"]
