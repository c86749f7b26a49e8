"""Preference data: loading (JSONL or a saved HF dataset) and validation before any training starts.

Row format (RLAIF-V / POVID / VLFeedback style): {"image": path, "prompt": str, "chosen": str,
"rejected": str} plus optional "id". Accepted aliases: "question" for prompt, "image_path" for image. In a
saved HF dataset, "image" may also be a PIL image (the `datasets` Image feature).

Validation (`validate_rows`) finds, with row numbers (JSONL line numbers, or 1-based dataset rows):
malformed JSON, missing fields, empty prompt/chosen/rejected, chosen == rejected (after whitespace
normalisation), missing or unreadable images, and, given an encoder, prompts whose image tokens would be cut
by max_length (peers crash mid-run with "Image features and image tokens do not match") or that leave no room
for a response. Bad rows are skipped with a count and the list written to OUTPUT/train/data_report.json, or
refused (bad_rows="refuse") with every row number in the error. Responses longer than the room left after the
prompt are truncated and counted (not an error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from halbench.errors import DataError
from halbench.images import load_image

ALIASES = {"prompt": ("prompt", "question"), "image": ("image", "image_path"),
           "chosen": ("chosen", "response", "answer")}


@dataclass
class PreferenceRow:
    prompt: str
    chosen: str
    rejected: str
    image: Any = None  # str path, PIL image, or None (text-only)
    row: int = 0  # 1-based line (JSONL) or row (dataset) number, for error messages
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        image = self.image if isinstance(self.image, (str, type(None))) else "<in-memory image>"
        return {"id": self.id, "image": image, "prompt": self.prompt, "chosen": self.chosen,
                "rejected": self.rejected, **self.extra}


@dataclass
class Problem:
    row: int
    reason: str


@dataclass
class ValidationReport:
    source: str
    n_rows: int
    kept: list[PreferenceRow]
    problems: list[Problem]
    n_truncated: int = 0  # rows whose chosen or rejected response is cut to fit max_length

    def summary(self) -> str:
        return (f"{self.source}: {self.n_rows} rows, {len(self.kept)} kept, {len(self.problems)} skipped, "
                f"{self.n_truncated} with a truncated response")

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "n_rows": self.n_rows, "n_kept": len(self.kept),
                "n_skipped": len(self.problems), "n_truncated_responses": self.n_truncated,
                "problems": [{"row": p.row, "reason": p.reason} for p in self.problems]}


# -- loading ----------------------------------------------------------------------------------------------
def _pick(raw: dict[str, Any], key: str) -> Any:
    for name in ALIASES.get(key, (key,)):
        if name in raw:
            return raw[name]
    return None


def _row_from_dict(raw: dict[str, Any], row: int, image_root: Path | None) -> PreferenceRow:
    image = _pick(raw, "image")
    if isinstance(image, str) and image and image_root is not None and not Path(image).is_absolute():
        image = str((image_root / image).absolute())  # absolute: rows are re-written to other folders
    known = {"id", "rejected"} | {name for names in ALIASES.values() for name in names}
    return PreferenceRow(prompt=_text(_pick(raw, "prompt")), chosen=_text(_pick(raw, "chosen")),
                         rejected=_text(raw.get("rejected")), image=image or None, row=row,
                         id=str(raw.get("id", row)), extra={k: v for k, v in raw.items() if k not in known})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def load_preferences(source: str | Path, image_root: str | Path | None = None
                     ) -> tuple[list[PreferenceRow], list[Problem]]:
    """Rows of a JSONL file or a saved HF dataset dir, plus the rows that could not even be parsed."""
    path = Path(source)
    if path.is_dir():
        return _load_hf_dataset(path, image_root), []
    if not path.is_file():
        raise DataError("preference data not found (expected a JSONL file or a saved HF dataset dir)", path=path)
    root = Path(image_root) if image_root else path.parent
    rows, problems = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(Problem(lineno, f"malformed JSON ({e.msg})"))
                continue
            if not isinstance(raw, dict):
                problems.append(Problem(lineno, "not a JSON object"))
                continue
            rows.append(_row_from_dict(raw, lineno, root))
    return rows, problems


def _load_hf_dataset(path: Path, image_root: str | Path | None) -> list[PreferenceRow]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets comes with trl
        raise DataError(f"loading a HF dataset needs the `datasets` package ({e})", path=path) from e
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"not a saved HF dataset ({e})", path=path) from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"dataset has splits {list(ds)} but no 'train'", path=path)
        ds = ds["train"]
    root = Path(image_root) if image_root else path
    rows = []
    for i, raw in enumerate(ds):
        raw = dict(raw)
        for key in ("image", "image_path"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raw[key] = _materialise_image(raw[key])
        rows.append(_row_from_dict(raw, i + 1, root))
    return rows


def _materialise_image(image: Any) -> str:
    """An in-memory dataset image (PIL, or {"bytes": ...}) saved once as PNG under the cache dir: the model
    backend loads images by path, and the path (content hash) keeps reference log-prob caching exact."""
    import hashlib
    import io
    import os

    from PIL import Image

    if isinstance(image, dict) and image.get("bytes"):
        image = Image.open(io.BytesIO(image["bytes"]))
    if not isinstance(image, Image.Image):
        raise DataError(f"unsupported image value of type {type(image).__name__}")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    root = Path(os.environ.get("HALBENCH_CACHE_DIR") or Path.home() / ".cache" / "halbench") / "dataset_images"
    out = root / f"{hashlib.sha256(buf.getvalue()).hexdigest()[:24]}.png"
    if not out.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(out)
    return str(out)


# -- validation -------------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


PAIR_FIELDS = ("prompt", "chosen", "rejected")


def check_row(row: PreferenceRow, required: tuple[str, ...] = PAIR_FIELDS) -> str | None:
    """The reason a row is unusable (text/image checks only), or None. `required`: the text fields that must
    be non-empty (BDHS input needs prompt + chosen, online DPO only prompt)."""
    for name in required:
        if not getattr(row, name).strip():
            return f"empty {name}"
    if "rejected" in required and _norm(row.chosen) == _norm(row.rejected):
        return "chosen == rejected"
    if isinstance(row.image, str):
        try:
            load_image(row.image)
        except DataError as e:
            return f"image: {e}"
    return None


def validate_rows(rows: Iterable[PreferenceRow], *, source: str, encoder: Any = None, bad_rows: str = "skip",
                  parse_problems: Iterable[Problem] = (), required: tuple[str, ...] = PAIR_FIELDS
                  ) -> ValidationReport:
    """Check every row before training. With an encoder (a `PairBatcher`, anything with
    `check_lengths(row) -> (reason|None, truncated: bool)`), also check token lengths against max_length."""
    rows, parse_problems = list(rows), list(parse_problems)
    problems, kept, n_truncated = list(parse_problems), [], 0
    for row in rows:
        reason = check_row(row, required)
        truncated = False
        if reason is None and encoder is not None:
            reason, truncated = encoder.check_lengths(row)
        if reason is not None:
            problems.append(Problem(row.row, reason))
            continue
        n_truncated += int(truncated)
        kept.append(row)
    problems.sort(key=lambda p: p.row)
    report = ValidationReport(source, len(rows) + len(parse_problems), kept, problems, n_truncated)
    if problems and bad_rows == "refuse":
        listing = "\n".join(f"  {source}:{p.row}: {p.reason}" for p in problems)
        raise DataError(f"{len(problems)} invalid preference row(s) (bad_rows=refuse):\n{listing}", path=source)
    if not kept:
        raise DataError(f"no usable preference rows ({len(problems)} invalid; first: "
                        f"row {problems[0].row}: {problems[0].reason})" if problems else "no rows", path=source)
    return report


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSONL atomically (used for generated pair files)."""
    from halbench.runs import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


# -- tensors ----------------------------------------------------------------------------------------------
#: [B, T] tensors that follow the token layout (everything else, e.g. pixel_values, is per image)
PER_TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "position_ids", "token_type_ids", "mm_token_type_ids")


def flush_left(inputs: dict[str, Any], pad_token_id: int, max_length: int | None = None) -> dict[str, Any]:
    """Right-pad a left-padded batch (real tokens moved to the left) and keep at most `max_length` columns,
    i.e. truncate responses from the end. 1-D position_ids are recomputed from the new attention mask.

    Why: `build_inputs` left-pads (right for generation); truncation must cut the response end, never the prompt
    or its image tokens (validation refuses rows where it would)."""
    mask = inputs["attention_mask"].bool()
    width = int(mask.sum(1).max())
    width = min(width, max_length) if max_length else width
    out = dict(inputs)
    for key in PER_TOKEN_KEYS:
        t = inputs.get(key)
        if t is None or t.dim() != 2 or key == "position_ids":
            continue
        fill = -100 if key == "labels" else pad_token_id if key == "input_ids" else 0
        new = t.new_full((t.shape[0], width), fill)
        for r in range(t.shape[0]):
            real = t[r][mask[r]][:width]
            new[r, :len(real)] = real
        out[key] = new
    if "position_ids" in inputs and inputs["position_ids"].dim() == 2:
        out["position_ids"] = (out["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return out


class PairBatcher:
    """Builds model inputs through the model backend's `build_inputs` (halbench.models.hf.HFModel), so
    training sees exactly the prompt format evaluation uses; adds truncation and the length checks.
    That includes the BOS the tokenizer adds at inference (TRL 1.16 does not add it: see training/dpo.py's card)."""

    def __init__(self, hf: Any, max_length: int):
        self.hf, self.max_length = hf, int(max_length)
        cfg = hf.model.config
        self.image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
        self.pad_token_id = hf.tokenizer.pad_token_id

    @staticmethod
    def requests(rows: list[Any]) -> list[Any]:
        from halbench.schema import Request

        return [Request(id=str(r.id), prompt=r.prompt, image=r.image) for r in rows]

    def sequences(self, requests: list[Any], responses: list[str]) -> dict[str, Any]:
        """One sequence per (request, response), response + eos as labels, right-padded, truncated."""
        inputs = self.hf.build_inputs(requests, responses, append_eos=True)
        return flush_left(inputs, self.pad_token_id, self.max_length)

    def pairs(self, rows: list[PreferenceRow]) -> dict[str, Any]:
        """[chosen_1..B, rejected_1..B] (TRL's concatenated layout), images repeated."""
        reqs = self.requests(rows)
        return self.sequences(reqs + reqs, [r.chosen for r in rows] + [r.rejected for r in rows])

    def check_lengths(self, row: PreferenceRow) -> tuple[str | None, bool]:
        """(reason the row cannot be trained on, whether a response will be truncated)."""
        reqs = self.requests([row])
        responses = [x for x in (row.chosen, row.rejected) if x] or [None]
        inputs = self.hf.build_inputs(reqs * len(responses), responses, append_eos=True)
        ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        width, truncated = ids.shape[1], False
        for r in range(ids.shape[0]):
            length = int(mask[r].sum())
            prompt = length - int((labels[r] != -100).sum())
            offset = width - length  # left padding
            if self.image_token_id is not None and row.image is not None:
                pos = (ids[r] == self.image_token_id).nonzero().flatten()
                if len(pos) and int(pos[-1]) - offset >= self.max_length:
                    return (f"image tokens would be truncated: the prompt is {prompt} tokens with {len(pos)} image "
                            f"tokens, max_length={self.max_length}"), False
            if prompt >= self.max_length:
                return f"the prompt is {prompt} tokens, max_length={self.max_length}: no room for the response", False
            truncated |= length > self.max_length
        return None, truncated
