"""Preference data: loading (every published layout, through halbench.training.pref_data) and validation before
any training starts.

Loading: `load_preferences(source, image_root, data_format)` accepts a file (JSONL, JSON array, JSON object
keyed by id, parquet, arrow), a folder of them as published, a `datasets.save_to_disk` dir, or a Hub dataset
id (`datasets.load_dataset`, online only); "FORMAT::SOURCE" forces a layout. Each published layout (RLAIF-V,
RLHF-V, VLFeedback/Silkie, LLaVA-RLHF, POVID, HA-DPO, TRL conversational, halbench's own rows) has its
module in training/pref_data/ with its published pair rule. halbench's own row format: {"image": path,
"prompt": str, "chosen": str, "rejected": str} plus optional "id"; aliases "question" for prompt,
"image_path" for image.

Validation (`validate_rows`) finds, with row numbers (JSONL line numbers, or 1-based dataset rows):
malformed JSON, missing fields, empty prompt/chosen/rejected, chosen == rejected (after whitespace
normalisation), missing or unreadable images, and, given an encoder, prompts whose image tokens would be cut
by max_length (peers crash mid-run with "Image features and image tokens do not match") or that leave no room
for a response. Bad rows are skipped with a count and the list written to OUTPUT/train/data_report.json, or
refused (bad_rows="refuse") with every row number in the error. Responses longer than the room left after the
prompt are truncated and counted (not an error). data_report.json also keeps what the published pair rule did
(format, records read, pairs produced, rule drops such as ties) and dropped counts by reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from halbench.errors import DataError
from halbench.images import load_image
from halbench.training.pref_data import load as _load_pairs
from halbench.training.pref_data.base import PreferenceRow, Problem, count_kinds
from halbench.training.pref_data.base import materialise_image as _materialise_image  # noqa: F401 (old name)
from halbench.training.pref_data.halbench_jsonl import ALIASES  # noqa: F401 (re-exported)

__all__ = ["PreferenceRow", "Problem", "ValidationReport", "load_preferences", "validate_rows", "check_row",
           "PairBatcher", "flush_left", "write_jsonl", "PAIR_FIELDS"]


@dataclass
class ValidationReport:
    source: str
    n_rows: int
    kept: list[PreferenceRow]
    problems: list[Problem]
    n_truncated: int = 0  # rows whose chosen or rejected response is cut to fit max_length
    load_info: dict[str, Any] = field(default_factory=dict)  # what the published pair rule did (pref_data)

    def summary(self) -> str:
        fmt = self.load_info.get("format")
        head = f"{self.source} [{fmt}]" if fmt else self.source
        return (f"{head}: {self.n_rows} rows, {len(self.kept)} kept, {len(self.problems)} skipped, "
                f"{self.n_truncated} with a truncated response")

    def dropped_by_reason(self) -> dict[str, int]:
        """Rows/pairs dropped by the published rule and by validation, by canonical reason."""
        counts = dict(self.load_info.get("rule_dropped", {}))
        for kind, n in count_kinds(self.problems).items():
            counts[kind] = counts.get(kind, 0) + n
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "n_rows": self.n_rows, "n_kept": len(self.kept),
               "n_skipped": len(self.problems), "n_truncated_responses": self.n_truncated,
               "problems": [{"row": p.row, "reason": p.reason, **({"file": p.file} if p.file else {})}
                            for p in self.problems]}
        if self.load_info:
            out.update({k: self.load_info[k] for k in ("format", "rule", "files", "ignored_files", "n_records",
                                                       "n_pairs_from_rule", "n_multi_turn") if k in self.load_info})
        out["dropped_by_reason"] = self.dropped_by_reason()
        return out


# -- loading ----------------------------------------------------------------------------------------------
def load_preferences(source: str | Path, image_root: str | Path | None = None, data_format: str | None = None,
                     limit: int | None = None) -> tuple[list[PreferenceRow], list[Problem]]:
    """Pairs of any published layout (see the module doc) plus the rows that could not even be parsed. The
    returned list carries `.info` (format, pairs the rule produced, rule drops) for the data report.
    `limit`: read only the first N records of the source."""
    return _load_pairs(source, image_root, data_format, limit=limit)


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
    `check_lengths(row) -> (reason|None, truncated: bool)`), also check token lengths against max_length.
    `rows` from `load_preferences` carry `.info` (the published rule's counts), kept in the report."""
    load_info = dict(getattr(rows, "info", None) or {})
    rows, parse_problems = list(rows), list(parse_problems)
    problems, kept, n_truncated = list(parse_problems), [], 0
    for row in rows:
        reason = check_row(row, required)
        truncated = False
        if reason is None and encoder is not None:
            reason, truncated = encoder.check_lengths(row)
        if reason is not None:
            problems.append(Problem(row.row, reason, _length_kind(reason), file=row.file if _multi(load_info) else ""))
            continue
        n_truncated += int(truncated)
        kept.append(row)
    problems.sort(key=lambda p: p.row)
    report = ValidationReport(source, len(rows) + len(parse_problems), kept, problems, n_truncated, load_info)
    if problems and bad_rows == "refuse":
        listing = "\n".join(f"  {p.file or source}:{p.row}: {p.reason}" for p in problems)
        raise DataError(f"{len(problems)} invalid preference row(s) (bad_rows=refuse):\n{listing}", path=source)
    if not kept:
        raise DataError(f"no usable preference rows ({len(problems)} invalid; first: "
                        f"row {problems[0].row}: {problems[0].reason})" if problems else "no rows", path=source)
    return report


def _length_kind(reason: str) -> str:
    return "truncated" if reason.startswith(("image tokens would be truncated", "the prompt is")) else ""


def _multi(load_info: dict[str, Any]) -> bool:
    return len(load_info.get("files", [])) > 1


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
        from halbench.training.image_mask import image_positions

        ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        is_image = image_positions(self.hf.model, inputs)  # the family's image positions (query tokens, ...)
        width, truncated = ids.shape[1], False
        for r in range(ids.shape[0]):
            length = int(mask[r].sum())
            prompt = length - int((labels[r] != -100).sum())
            offset = width - length  # left padding
            if row.image is not None:
                pos = is_image[r].nonzero().flatten()
                if len(pos) and int(pos[-1]) - offset >= self.max_length:
                    return (f"image tokens would be truncated: the prompt is {prompt} tokens with {len(pos)} image "
                            f"tokens, max_length={self.max_length}"), False
            if prompt >= self.max_length:
                return f"the prompt is {prompt} tokens, max_length={self.max_length}: no room for the response", False
            truncated |= length > self.max_length
        return None, truncated
