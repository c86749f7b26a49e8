"""Published Hugging Face copies of the benchmarks, loaded through `datasets` (for users who are online).

A task option `data=hf:DATASET_ID` (or `halbench eval --hf-datasets`, which picks the ids below) reads the
rows with `datasets.load_dataset(DATASET_ID, hf_config, split=hf_split, revision=hf_revision)`. Embedded images
are written once, byte for byte (never re-encoded), to <user cache>/hf_images/<id>/<dataset fingerprint>/, because
a Request carries an image path.

- POPE: `lmms-lab/POPE` (what lmms-eval's pope task reads). Layout (dataset card, README dataset_info): config
  `default`, split `test`, 9,000 rows = the current RUCAIBox/POPE files (3 x 3,000); config `Full` holds the
  same rows as splits adversarial / popular / random. Columns: id (string), question_id (string), question
  (string), answer (string "yes"/"no"), image_source (string, the COCO val2014 file stem), image (embedded),
  category (string: the split). Prompt: the question as stored (lmms-eval adds its suffix in doc_to_text;
  add it with prompt_suffix or --protocol llava-1.5).
- MMHal-Bench: no default id. The official copy (Shengcao1006/MMHal-Bench) is a folder of
  response_template.json + images/ -- use `--mmhal-root` on a download of it. `data=hf:ID` reads any copy whose
  rows carry the template's fields (question_type, question_topic, image_id, question, gt_answer, optional
  image_content / image_src) and an embedded `image` column; that layout is checked here, not verified
  against a particular published copy.
- Object HalBench / CHAIR: no published HF copy with COCO ground truth was found; use --coco-root.
Tests read fixtures written in these layouts (parquet with embedded images); they never reach the network.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from halbench.errors import DataError, NotAvailableError

POPE_HF = "lmms-lab/POPE"
#: task name -> the default published copy `--hf-datasets` selects (tasks without one keep their own data)
DEFAULT_IDS = {"pope": POPE_HF}
POPE_COLUMNS = ("question_id", "question", "answer", "image_source", "image", "category")
MMHAL_COLUMNS = ("question_type", "question_topic", "image_id", "question", "gt_answer", "image")


def hf_id(data: Any) -> str | None:
    """'hf:lmms-lab/POPE' -> 'lmms-lab/POPE'; anything else -> None."""
    s = str(data or "")
    return s[3:].strip() or None if s.startswith("hf:") else None


def describe_hf(options: dict[str, Any]) -> str:
    """'lmms-lab/POPE (config default, split test)' for a task's data=hf:ID options."""
    rev = f", revision {options['hf_revision']}" if options.get("hf_revision") else ""
    return (f"{hf_id(options.get('data'))} (config {options.get('hf_config') or 'default'}, "
            f"split {options.get('hf_split') or 'test'}{rev})")


def load_rows(dataset_id: str, config: str | None, split: str, revision: str | None, columns: tuple[str, ...]):
    """The dataset split with its image column left undecoded ({bytes, path}); errors name the dataset."""
    try:
        import datasets
    except ImportError as e:
        raise NotAvailableError(f"data=hf:{dataset_id} needs the `datasets` package (pip install datasets)") from e
    where = f"hf:{dataset_id}" + (f" (config {config})" if config else "") + f" split {split}"
    try:
        ds = datasets.load_dataset(dataset_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - hub, network, cache and format errors all mean "cannot load"
        raise DataError(f"cannot load the dataset ({type(e).__name__}: {e}); offline machines: download it "
                        "first or use the data roots (--coco-root / --mmhal-root)", path=where) from e
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"dataset lacks column(s) {', '.join(missing)} (has {', '.join(ds.column_names)})",
                        path=where)
    return ds.cast_column("image", datasets.Image(decode=False)), where


def image_store(dataset_id: str, ds: Any) -> Path:
    from halbench.judge_cache import default_cache_dir

    fp = str(getattr(ds, "_fingerprint", None) or "nofp")
    return default_cache_dir() / "hf_images" / re.sub(r"[^\w.-]+", "_", dataset_id) / fp[:16]


def write_image(store: Path, stem: str, value: Any, where: str, row: int) -> Path:
    """The embedded image's bytes under `stem` + its own extension; written once (atomic rename)."""
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise DataError(f"row {row}: the image is not embedded (no bytes)", path=where)
    ext = Path(str(value.get("path") or "")).suffix.lower() or _sniff(data)
    safe = re.sub(r"[^\w.-]+", "_", stem)
    path = store / (safe if safe.lower().endswith(ext) else safe + ext)
    if not path.is_file():
        store.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{hashlib.sha1(data).hexdigest()[:8]}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _sniff(data: bytes) -> str:
    return ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"


def pope_questions(dataset_id: str, config: str | None = None, split: str | None = None,
                   revision: str | None = None, splits: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """POPE questions in halbench.tasks.pope.load_pope's shape, from a copy in lmms-lab/POPE's layout."""
    ds, where = load_rows(dataset_id, config, split or "test", revision, POPE_COLUMNS)
    store, written = image_store(dataset_id, ds), {}
    out, seen = [], set()
    for i, row in enumerate(ds):
        label = str(row["answer"]).strip().lower()
        if label not in ("yes", "no"):
            raise DataError(f"row {i}: answer must be yes or no, not {row['answer']!r}", path=where)
        qid = int(row["question_id"]) if str(row["question_id"]).isdigit() else row["question_id"]
        key = (row["category"], qid)
        if key in seen:
            raise DataError(f"row {i}: question_id {qid} repeated in split {row['category']}", path=where)
        seen.add(key)
        if splits and row["category"] not in splits:
            continue
        stem = str(row["image_source"])
        if stem not in written:
            written[stem] = str(write_image(store, stem, row["image"], where, i))
        out.append({"question_id": qid, "image": stem, "text": str(row["question"]).strip(), "label": label,
                    "split": str(row["category"]), "source": where, "line": i, "image_path": written[stem]})
    if not out:
        raise DataError(f"no questions{' for split(s) ' + ', '.join(splits) if splits else ''}", path=where)
    return out


def mmhal_items(dataset_id: str, config: str | None = None, split: str | None = None,
                revision: str | None = None) -> list[dict[str, Any]]:
    """MMHal-Bench items (the template's fields + image_path to the written image), in dataset order."""
    ds, where = load_rows(dataset_id, config, split or "test", revision, MMHAL_COLUMNS)
    store, out = image_store(dataset_id, ds), []
    for i, row in enumerate(ds):
        item = {k: row[k] for k in MMHAL_COLUMNS[:-1]}
        item["image_content"] = list(row.get("image_content") or [])
        item["image_src"] = row.get("image_src") or ""
        stem = Path(str(item["image_src"])).stem if item["image_src"] else f"{i:03d}_{item['image_id']}"
        item["image_path"] = str(write_image(store, stem, row["image"], where, i))
        out.append(item)
    if not out:
        raise DataError("no MMHal-Bench items", path=where)
    return out
