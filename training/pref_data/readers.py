"""Reading preference records as the datasets publish them: JSONL, a JSON array (POVID, LLaVA-RLHF), a JSON
object keyed by id (HA-DPO's desc_data.json), parquet (RLAIF-V, RLHF-V, VLFeedback, TRL layouts on the Hub),
arrow files, `datasets.save_to_disk` folders, a folder of any of these, or a Hub dataset id through
`datasets.load_dataset` (for users who are online).

Every reader yields `Record`s (1-based row numbers, the file) or `Problem`s for lines that cannot be parsed
(JSONL: malformed JSON / not UTF-8 / not an object); a whole-file JSON that cannot be decoded is a DataError
naming the file and line. Image columns are read raw ({"bytes", "path"}), never decoded here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from halbench.errors import DataError
from halbench.training.pref_data.base import Problem, Record

HUB_ID = re.compile(r"^(hf:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
BATCH = 256


@dataclass
class Source:
    """A resolved data source: its files (or a loaded dataset) and the default image root."""

    label: str
    files: list[Path] = field(default_factory=list)
    dataset: Any = None  # a datasets.Dataset (Hub id or save_to_disk dir)
    image_root: Path | None = None
    ignored: list[dict[str, str]] = field(default_factory=list)  # files left out, with why (never silently)


def open_source(spec: str | Path, split: str = "train") -> Source:
    """Resolve a local path or a Hub dataset id; DataError when it is neither."""
    path = Path(spec)
    if path.is_file():
        return Source(str(path), [path], image_root=path.parent)
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return Source(str(path), dataset=_load_from_disk(path, split), image_root=path)
        files, ignored = _folder_files(path)
        return Source(str(path), files, image_root=path, ignored=ignored)
    if HUB_ID.match(str(spec)) and not str(spec).startswith((".", "/")) and path.suffix not in DATA_SUFFIXES:
        return Source(str(spec), dataset=_load_hub(str(spec).removeprefix("hf:"), split), image_root=None)
    raise DataError("preference data not found (expected a JSONL/JSON/parquet file, a folder of them, a saved HF "
                    "dataset dir, or a Hub dataset id such as openbmb/RLAIF-V-Dataset)", path=spec)


def _folder_files(folder: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The data files of a published folder: parquet (any depth, the train split when splits are named), else
    arrow, else top-level JSON/JSONL, and the files left out with why. Which of them hold the detected layout
    is decided per file later. RLAIF-V's own trainer writes *logp*.parquet copies (rows + reference log-probs)
    next to the data; they would double every row, so they are left out when the originals are there."""
    for suffix in (".parquet", ".arrow"):
        files = sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())
        if not files:
            continue
        logp = [p for p in files if "logp" in p.name]
        ignored = [{"file": str(p), "why": "RLAIF-V log-prob copy"} for p in logp] if len(logp) < len(files) else []
        files = [p for p in files if not ignored or p not in logp]
        named = [p for p in files if re.search(r"(^|[-_])(train|test|validation|val)[-_.]", p.name)
                 or p.parent.name in ("train", "test", "validation")]
        train = [p for p in named if "train" in p.name or p.parent.name == "train"]
        if train:
            ignored += [{"file": str(p), "why": "not the train split"} for p in files if p not in train]
            files = train
        return files, ignored
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json"))
    if not files:
        raise DataError("no preference data files in this folder (looked for *.parquet, *.arrow, *.jsonl, *.json)",
                        path=folder)
    return files, []


def _datasets():
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is in the train extra
        raise DataError(f"reading this source needs the `datasets` package ({e})") from e
    return datasets


def _pick_split(ds: Any, split: str, where: str) -> Any:
    datasets = _datasets()
    if isinstance(ds, (datasets.DatasetDict, dict)):
        if split not in ds:
            raise DataError(f"dataset has splits {list(ds)} but no {split!r}", path=where)
        return ds[split]
    return ds


def _load_from_disk(path: Path, split: str) -> Any:
    try:
        ds = _datasets().load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"not a saved HF dataset ({e})", path=path) from e
    return _pick_split(ds, split, str(path))


def _load_hub(repo_id: str, split: str) -> Any:
    """`datasets.load_dataset(repo_id)`; offline or unknown ids become one clear DataError."""
    try:
        ds = _datasets().load_dataset(repo_id)
    except Exception as e:  # noqa: BLE001 - connection, auth, missing repo: all one message for the user
        raise DataError(f"no local file or folder {repo_id!r}, and could not load Hub dataset {repo_id!r} "
                        f"({type(e).__name__}: {e}); when offline, download it elsewhere and pass the local copy "
                        "(parquet/JSON folder or save_to_disk dir)") from e
    return _pick_split(ds, split, repo_id)


# -- records -----------------------------------------------------------------------------------------------
def records(source: Source, files: list[Path] | None = None) -> Iterator[Record | Problem]:
    if source.dataset is not None:
        yield from _dataset_records(source.dataset, source.label)
        return
    for f in files if files is not None else source.files:
        yield from file_records(f)


def first_record(source: Source, path: Path | None = None) -> dict[str, Any] | None:
    """The first parseable record (for format detection), or None when there is none."""
    it = _dataset_records(source.dataset, source.label) if path is None else file_records(path)
    for item in it:
        if isinstance(item, Record):
            return item.data
    return None


def file_records(path: Path) -> Iterator[Record | Problem]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_records(path)
    elif suffix == ".arrow":
        yield from _arrow_records(path)
    elif suffix == ".jsonl":
        yield from _jsonl_records(path)
    else:
        yield from _json_records(path)


def _jsonl_records(path: Path) -> Iterator[Record | Problem]:
    label = str(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Problem(lineno, f"malformed: not UTF-8 text (byte {e.start})", file=label)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield Problem(lineno, f"malformed JSON ({e.msg})", file=label)
                continue
            if not isinstance(obj, dict):
                yield Problem(lineno, "not a JSON object", file=label)
                continue
            yield Record(obj, lineno, label)


def load_json(path: Path) -> Any:
    """A whole JSON file; non-UTF-8 bytes or malformed JSON are a DataError with the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", path=path, line=data[:e.start].count(b"\n") + 1) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg}, column {e.colno})", path=path, line=e.lineno) from e


def _json_records(path: Path) -> Iterator[Record | Problem]:
    """A JSON array of records, or an object keyed by id whose values are records (key kept as `_key`)."""
    obj, label = load_json(path), str(path)
    if isinstance(obj, list):
        for i, item in enumerate(obj, start=1):
            yield Record(item, i, label) if isinstance(item, dict) else Problem(i, "not a JSON object", file=label)
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        for i, (key, value) in enumerate(obj.items(), start=1):
            yield Record({"_key": key, **value}, i, label)
    elif isinstance(obj, dict):
        yield Record(obj, 1, label)  # a single record; its layout is checked like any other
    else:
        raise DataError(f"expected a JSON array or object of records, got {type(obj).__name__}", path=path)


def _parquet_records(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"not a readable parquet file ({e})", path=path) from e
    n = 0
    for batch in pf.iter_batches(batch_size=BATCH):
        for obj in batch.to_pylist():
            n += 1
            yield Record(obj, n, str(path))


def _arrow_records(path: Path) -> Iterator[Record]:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
        except pa.ArrowInvalid as e:
            raise DataError(f"not a readable arrow file ({e})", path=path) from e
    n = 0
    batches = reader if hasattr(reader, "__iter__") else (reader.get_batch(i) for i in range(reader.num_record_batches))
    for batch in batches:
        for obj in batch.to_pylist():
            n += 1
            yield Record(obj, n, str(path))


def _dataset_records(ds: Any, label: str) -> Iterator[Record]:
    """Rows of a datasets.Dataset in raw arrow form: images stay {"bytes", "path"} (no decode + re-encode)."""
    n = 0
    for batch in ds.with_format("arrow").iter(batch_size=BATCH):
        for obj in batch.to_pylist():
            n += 1
            yield Record(obj, n, label)
