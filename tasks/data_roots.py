"""Data roots: one folder per benchmark family instead of a handful of task options.

`--coco-root DIR` (config key `coco_root`, environment variable HALBENCH_COCO_ROOT) names a standard COCO 2014
layout, as cocodataset.org ships it:

    DIR/val2014/COCO_val2014_<12-digit id>.jpg
    DIR/train2014/...                                   (not needed by any task here)
    DIR/annotations/instances_val2014.json, captions_val2014.json

POPE reads the official question files shipped in the package (tasks/data/pope/) with DIR/val2014 images;
CHAIR the shipped 500-image list, DIR/val2014 images and ground truth built from the two val2014 annotation
files (cached, halbench.tasks.chair_gt.coco_gt); Object HalBench its 300 shipped prompts, DIR/val2014 and the
same annotations. `--mmhal-root DIR` (HALBENCH_MMHAL_ROOT) names a copy of the MMHal-Bench dataset repository
(huggingface.co/datasets/Shengcao1006/MMHal-Bench): DIR/images/<basename of image_src> and, when present,
DIR/response_template.json (else the packaged copy of the same 96 items). Each task asks only for what it uses;
a missing file or folder is named in the error, with the layout expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from halbench.errors import DataError

ENV_COCO = "HALBENCH_COCO_ROOT"
ENV_MMHAL = "HALBENCH_MMHAL_ROOT"
COCO_LAYOUT = "val2014/, annotations/instances_val2014.json, annotations/captions_val2014.json"
PACKAGED_MMHAL = Path(__file__).resolve().parent / "data" / "mmhal" / "mmhal-bench_answer_template.json"


def _root(value: str | Path, what: str, env: str) -> Path:
    root = Path(str(value)).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} root is not a folder (from --{what.lower()}-root or ${env})", path=root)
    return root


@dataclass(frozen=True)
class CocoRoot:
    """A COCO 2014 folder; attributes are paths, `require` checks the ones a task needs."""

    root: Path

    @classmethod
    def open(cls, value: str | Path) -> "CocoRoot":
        return cls(_root(value, "COCO", ENV_COCO))

    @property
    def val2014(self) -> Path:
        return self.root / "val2014"

    @property
    def instances_val(self) -> Path:
        return self.root / "annotations" / "instances_val2014.json"

    @property
    def captions_val(self) -> Path:
        return self.root / "annotations" / "captions_val2014.json"

    def require_images(self) -> Path:
        if not self.val2014.is_dir():
            raise DataError(f"COCO root has no val2014/ image folder (expected layout: {COCO_LAYOUT})",
                            path=self.val2014)
        return self.val2014

    def require_annotations(self) -> tuple[Path, Path]:
        for f in (self.instances_val, self.captions_val):
            if not f.is_file():
                raise DataError(f"COCO root lacks annotations/{f.name} (expected layout: {COCO_LAYOUT})", path=f)
        return self.instances_val, self.captions_val

    def image(self, image_id: int | str) -> Path:
        """val2014/COCO_val2014_<12-digit id>.jpg (the official name); a bare <12-digit id>.jpg also works."""
        if not isinstance(image_id, int):
            return self.val2014 / str(image_id)
        official = self.val2014 / f"COCO_val2014_{image_id:012d}.jpg"
        bare = self.val2014 / f"{image_id:012d}.jpg"
        return bare if not official.is_file() and bare.is_file() else official


@dataclass(frozen=True)
class MMHalRoot:
    """A copy of the MMHal-Bench dataset repository (images/ + response_template.json)."""

    root: Path

    @classmethod
    def open(cls, value: str | Path) -> "MMHalRoot":
        return cls(_root(value, "MMHal", ENV_MMHAL))

    @property
    def template(self) -> Path:
        own = self.root / "response_template.json"
        return own if own.is_file() else PACKAGED_MMHAL

    def require_images(self) -> Path:
        images = self.root / "images"
        if not images.is_dir():
            raise DataError("MMHal-Bench root has no images/ folder (expected: images/<file of image_src>, "
                            "response_template.json)", path=images)
        return images


def env_root(value: str | None, env: str) -> str | None:
    """An explicit value wins; else the environment variable (empty = unset)."""
    return value or os.environ.get(env) or None


# -- the POPE question files shipped in the package (tasks/data/pope/ATTRIBUTION.md) ------------------------
POPE_DIR = Path(__file__).resolve().parent / "data" / "pope"
#: version -> what it is; the first is the default (the current RUCAIBox/POPE files)
POPE_VERSIONS = {
    "3df3ba1": "RUCAIBox/POPE @ 3df3ba1 output/coco (current; 3,000 questions per split)",
    "e3e3926": "RUCAIBox/POPE @ e3e3926 (the files LLaVA-1.5, OPERA and LLaVA-RLHF evaluated; random: 2,910)",
}


def packaged_pope(version: str | None) -> Path:
    """The folder of coco_pope_{random,popular,adversarial}.json for a POPE version."""
    version = str(version or next(iter(POPE_VERSIONS)))
    if version not in POPE_VERSIONS:
        from halbench.errors import HalbenchError

        raise HalbenchError(f"unknown POPE version {version!r}; choose one of {', '.join(POPE_VERSIONS)}")
    return POPE_DIR / version
