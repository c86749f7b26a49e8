"""Shared types of the preference-data loaders: the row every method trains on, a dropped-row record, and the
small helpers each published format uses (required fields, conversation turns, image values).

No halbench.training import here: training/data.py re-exports these names and routes through this package.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from halbench.errors import DataError


@dataclass
class PreferenceRow:
    prompt: str
    chosen: str
    rejected: str
    image: Any = None  # str path, PIL image, or None (text-only)
    row: int = 0  # 1-based line (JSONL) or row (dataset) number, for error messages
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    file: str = ""  # the file the row came from when a source has several (else "")

    def to_json(self) -> dict[str, Any]:
        image = self.image if isinstance(self.image, (str, type(None))) else "<in-memory image>"
        return {"id": self.id, "image": image, "prompt": self.prompt, "chosen": self.chosen,
                "rejected": self.rejected, **self.extra}


@dataclass
class Problem:
    row: int
    reason: str
    kind: str = ""  # canonical reason (see KINDS); derived from `reason` when empty
    file: str = ""

    def __post_init__(self) -> None:
        self.kind = self.kind or problem_kind(self.reason)


#: canonical drop reasons counted in data_report.json / `halbench data inspect`
KINDS = ("tie", "non-numeric rating", "already correct", "identical", "missing image", "truncated",
         "empty field", "missing field", "malformed", "other")


def problem_kind(reason: str) -> str:
    """The canonical kind of a free-text reason (validation reasons predate the kinds)."""
    r = reason.lower()
    for prefix, kind in (("chosen == rejected", "identical"), ("image tokens", "truncated"), ("image", "missing image"),
                         ("the prompt is", "truncated"), ("empty ", "empty field"),
                         ("missing field", "missing field"), ("malformed", "malformed"),
                         ("not a json", "malformed"), ("tie", "tie"), ("non-numeric", "non-numeric rating")):
        if r.startswith(prefix):
            return kind
    return "other"


@dataclass
class Record:
    """One raw record of a published file, with where it came from (for error messages)."""

    data: dict[str, Any]
    row: int
    file: str


@dataclass
class Context:
    """What a pair rule needs besides the record: the image root and the per-format state (e.g. HA-DPO's
    Visual Genome id -> path map, its random generator)."""

    image_root: Path | None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Format:
    """A published preference layout: how to recognise it and its pair-construction rule."""

    name: str
    source: str  # dataset id / paper, for the card and `halbench data formats`
    detect: Callable[[dict[str, Any]], bool]
    pairs: Callable[[Record, Context], tuple[list[PreferenceRow], list[Problem]]]
    required: tuple[str, ...]  # fields named in the mismatch error
    rule: str  # one line: the published pair-construction rule
    prepare: Callable[[Context, list[Path]], None] | None = None  # e.g. load image_data.json once


class FieldMissing(DataError):
    """A record lacks a field its layout needs (a skipped row inside a file; the whole file when forced)."""

    def __init__(self, message: str, field_name: str, path: object | None = None, line: int | None = None):
        super().__init__(message, path=path, line=line)
        self.field_name = field_name


def need(rec: Record, name: str, fmt: str) -> Any:
    """rec.data[name], or a FieldMissing error naming the missing field, the file and the row."""
    if name not in rec.data:
        raise FieldMissing(f"{fmt} row has no field {name!r} (fields: {', '.join(sorted(rec.data)) or 'none'}); "
                        f"use --data-format to force another layout", name, path=rec.file or None, line=rec.row)
    return rec.data[name]


def text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def strip_image_token(value: str) -> str:
    """LLaVA-style turns carry '<image>' where the image goes; halbench's prompt template places it itself."""
    return " ".join(value.replace("<image>", " ").split()) if "<image>" in value else value.strip()


def last_turn(turns: Any, role: str, rec: Record, fmt: str, key: str) -> tuple[str, list[dict[str, Any]]]:
    """(value of the last `role` turn, the turns before it) of a LLaVA conversation list [{from, value}]."""
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise DataError(f"{fmt}: {key!r} must be a list of {{from, value}} turns", path=rec.file or None,
                        line=rec.row)
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].get("from") == role:
            return text(turns[i].get("value")), turns[:i]
    return "", turns


def resolve_path(value: str, root: Path | None) -> str:
    """A relative image path made absolute against the image root (rows are re-written to other folders)."""
    if root is not None and not Path(value).is_absolute():
        return str((root / value).absolute())
    return value


def image_value(value: Any, root: Path | None) -> Any:
    """A row's image as the backend wants it: a path string (relative ones resolved against `root`); embedded
    bytes ({"bytes", "path"} as parquet stores them, or a PIL image) are written once to the cache dir."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return resolve_path(value, root)
    if isinstance(value, dict):
        if value.get("bytes"):
            return materialise_image(value)
        if value.get("path"):
            return resolve_path(value["path"], root)
        return None
    return materialise_image(value)


def cache_root() -> Path:
    return Path(os.environ.get("HALBENCH_CACHE_DIR") or Path.home() / ".cache" / "halbench") / "dataset_images"


def materialise_image(image: Any) -> str:
    """An in-memory dataset image (PIL, or {"bytes": ...}) saved once under the cache dir, named by content hash:
    the model backend loads images by path, and the hash keeps reference log-prob caching exact. Encoded bytes
    are written as they are (no re-encoding); a PIL image is saved as PNG."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, dict) and image.get("bytes"):
        data = bytes(image["bytes"])
        try:
            fmt = (Image.open(io.BytesIO(data)).format or "png").lower()
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"embedded image bytes are not an image ({e})") from e
        suffix = {"jpeg": ".jpg"}.get(fmt, f".{fmt}")
    elif isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        data, suffix = buf.getvalue(), ".png"
    else:
        raise DataError(f"unsupported image value of type {type(image).__name__}")
    root = cache_root()
    out = root / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if not out.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return str(out)


class LoadedPairs(list):
    """The pairs a source produced (a plain list of PreferenceRow) plus what the published rule did: `info`
    (format, files, records, pairs, dropped counts by reason) goes into data_report.json."""

    info: dict[str, Any]

    def __init__(self, rows: Iterable[PreferenceRow] = (), info: dict[str, Any] | None = None):
        super().__init__(rows)
        self.info = info or {}


def count_kinds(problems: Iterable[Problem]) -> dict[str, int]:
    return dict(sorted(Counter(p.kind for p in problems).items()))


def iter_pairs(records: Iterator[Record | Problem], fmt: Format, ctx: Context, rows: list[PreferenceRow],
               rule_drops: list[Problem]) -> int:
    """Apply the format's pair rule to every record; returns the number of records."""
    n = 0
    for rec in records:
        if isinstance(rec, Problem):  # a line the reader could not parse
            rule_drops.append(rec)
            continue
        n += 1
        try:
            made, dropped = fmt.pairs(rec, ctx)
        except FieldMissing as e:
            rule_drops.append(Problem(rec.row, f"missing field {e.field_name!r} ({fmt.name})", file=rec.file))
            continue
        for r in made:
            r.file = r.file or rec.file
        rows.extend(made)
        rule_drops.extend(dropped)
    return n
