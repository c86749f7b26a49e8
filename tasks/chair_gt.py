"""CHAIR ground truth: {image_id: {COCO class, ...}} from precomputed JSON sets or from COCO annotations.

Split from halbench.tasks.chair (which re-exports these names). `coco_gt` builds the sets for given images
from one instances + one captions file with the task's own pipeline (as the official get_annotations()
does) and caches them under the user's cache dir, keyed by the annotation files' content hash, the pipeline
and the synonym list, so a 40k-image COCO val annotation set is parsed once per image, not once per run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from halbench.errors import DataError

from halbench.tasks.chair_scorer import ChairScorer

_PART_RE = re.compile(r"^(?P<stem>.*)_part(?P<k>\d+)of(?P<n>\d+)\.json$")


def image_id_of(value: Any) -> int | str:
    """12345, "12345", "COCO_val2014_000000012345.jpg", "000000012345.jpg" -> 12345; other strings kept."""
    if isinstance(value, bool):
        raise ValueError(f"not an image id: {value!r}")
    if isinstance(value, int):
        return value
    s = str(value).strip()
    m = re.fullmatch(r"(?:.*?_)?0*(\d+)(?:\.(?:jpg|jpeg|png))?", s, flags=re.I)
    return int(m.group(1)) if m else s


def load_gt(source: str | Path | list | None = None, *, pipeline: str = "opera", synonyms: str | Path = "coco2018",
            image_ids: Iterable[Any] | None = None) -> dict[int | str, set[str]]:
    """Ground-truth object sets {image_id: {class, ...}}.

    source: None or "world" -> the embedded world; a COCO annotations folder (instances_*.json +
    captions_*.json, read with pycocotools, captions parsed with `pipeline`/`synonyms` like the official
    code); a JSON file {image_id: [objects]} (a `*_part1of2.json` name loads every part); a folder of such
    JSON files; or a list of files. `image_ids` restricts what is kept (and what COCO captions are parsed).
    """
    keep = None if image_ids is None else {image_id_of(i) for i in image_ids}
    if source is None or str(source) == "world":
        from halbench.world import default_world

        source = default_world().gt_objects_json
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source]
    else:
        p = Path(source)
        if p.is_dir() and list(p.glob("instances_*.json")):
            return _gt_from_coco(p, ChairScorer(synonyms, pipeline), keep)
        if p.is_dir():
            files = sorted(p.glob("*.json"))
        else:
            files = _part_files(p)
    gt: dict[int | str, set[str]] = {}
    for f in files:
        for k, v in _read_gt_json(f).items():
            if keep is None or k in keep:
                gt.setdefault(k, set()).update(v)
    return gt


def _part_files(p: Path) -> list[Path]:
    m = _PART_RE.match(p.name)
    if not m:
        return [p]
    n = int(m.group("n"))
    files = [p.with_name(f"{m.group('stem')}_part{k}of{n}.json") for k in range(1, n + 1)]
    for f in files:
        if not f.is_file():
            raise DataError(f"ground-truth part {f.name} is missing (all {n} parts are needed)", path=f)
    return files


def _read_gt_json(f: Path) -> dict[int | str, list[str]]:
    if not f.is_file():
        raise DataError("ground-truth file not found", path=f)
    from halbench.textio import read_text

    try:
        data = json.loads(read_text(f, "ground-truth file"))  # a non-UTF-8 byte: DataError naming file and line
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg})", path=f, line=e.lineno) from e
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError("expected a JSON object {image_id: [object class, ...]}", path=f)
    return {image_id_of(k): v for k, v in data.items()}


def _gt_from_coco(folder: Path, scorer: ChairScorer, keep: set | None) -> dict[int | str, set[str]]:
    """Every instances_*.json and captions_*.json of an annotations folder (see gt_from_coco_files)."""
    caps = sorted(folder.glob("captions_*.json"))
    if not caps:
        raise DataError("no captions_*.json next to the instances files (CHAIR GT needs both)", path=folder)
    return gt_from_coco_files(sorted(folder.glob("instances_*.json")), caps, scorer, keep)


def gt_from_coco_files(instances: list[Path], captions: list[Path], scorer: ChairScorer,
                       keep: set | None) -> dict[int | str, set[str]]:
    """Official get_annotations(): segmentation classes, then classes mentioned in the GT captions."""
    import contextlib
    import sys

    from pycocotools.coco import COCO
    from tqdm import tqdm

    gt: dict[int | str, set[str]] = {}
    inv = scorer.synonyms.inverse
    with contextlib.redirect_stdout(sys.stderr):  # pycocotools prints progress; stdout may carry --json
        inst = [_coco(COCO, f) for f in instances]
        caps = [_coco(COCO, f) for f in captions]
    for coco in inst:
        names = {c["id"]: c["name"] for c in coco.dataset.get("categories", [])}
        for ann in coco.dataset.get("annotations", []):
            if keep is None or ann["image_id"] in keep:
                name = names[ann["category_id"]]
                gt.setdefault(ann["image_id"], set()).add(inv.get(name, name))
    anns = [a for coco in caps for a in coco.dataset.get("annotations", []) if keep is None or a["image_id"] in keep]
    for ann in tqdm(anns, desc="CHAIR GT captions", disable=len(anns) < 5000, file=sys.stderr):
        gt.setdefault(ann["image_id"], set()).update(m.cls for m in scorer.extract(ann["caption"]))
    for coco in inst + caps:  # images with no annotation at all still have a (empty) GT set
        for img in coco.dataset.get("images", []):
            if keep is None or img["id"] in keep:
                gt.setdefault(img["id"], set())
    return gt


def _coco(cls, path: Path):
    try:
        return cls(str(path))
    except (OSError, ValueError, KeyError, TypeError) as e:  # pycocotools: json errors are ValueError
        raise DataError(f"cannot read COCO annotations ({type(e).__name__}: {e})", path=path) from e


# -- cached ground truth from one COCO annotation pair (--coco-root) -----------------------------------------
#: bump when the way sets are built changes (the cache must not serve sets built the old way)
GT_BUILD_VERSION = "1"
_HASHES: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """sha256 (first 16 hex) of a file, memoized by (path, size, mtime): COCO instances are ~150 MB."""
    from halbench.runs import file_sha256

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def gt_cache_path(instances: Path, captions: Path, scorer: ChairScorer) -> Path:
    """<user cache>/chair_gt/<key>.json; key = annotation hashes + pipeline + synonym list + build version."""
    import hashlib

    from halbench.judge_cache import default_cache_dir

    material = json.dumps([content_hash(instances), content_hash(captions), scorer.pipeline,
                           content_hash(Path(scorer.synonyms.path)), GT_BUILD_VERSION])
    return default_cache_dir() / "chair_gt" / (hashlib.sha256(material.encode()).hexdigest()[:24] + ".json")


def coco_gt(instances: Path, captions: Path, scorer: ChairScorer,
            image_ids: Iterable[Any]) -> dict[int | str, set[str]]:
    """GT sets of `image_ids` from one instances + one captions file, built once and cached (see module doc).
    Ids absent from both files are left out (the caller names them)."""
    from halbench.runs import atomic_write_json

    want = {image_id_of(i) for i in image_ids}
    path = gt_cache_path(instances, captions, scorer)
    cached = _read_cache(path)
    missing = want - set(cached)
    if missing:
        built = gt_from_coco_files([instances], [captions], scorer, missing)
        cached.update({k: sorted(v) for k, v in built.items()})
        meta = {"instances": str(instances), "captions": str(captions), "pipeline": scorer.pipeline,
                "synonyms": str(scorer.synonyms.path), "version": GT_BUILD_VERSION}
        atomic_write_json(path, {"meta": meta, "gt": {str(k): v for k, v in cached.items()}})
    return {k: set(cached[k]) for k in want if k in cached}


def _read_cache(path: Path) -> dict[int | str, list[str]]:
    """The cached sets; an unreadable cache file is rebuilt, never trusted."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {image_id_of(k): list(v) for k, v in data["gt"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
