"""Published preference datasets -> halbench preference rows, each with its published pair rule.

    rows, problems = load(source, image_root=None, data_format=None)

`source`: a file, a folder of files as published, a `datasets.save_to_disk` dir, or a Hub dataset id;
"FORMAT::SOURCE" forces a layout (what `--data-format` passes through a method's `data` setting).
The layout is inferred from the first record's fields (FORMATS, in order; each is distinguishable by its
fields); a forced layout that does not fit is a DataError naming the missing fields.
`rows` is a `LoadedPairs` list whose `.info` records the format, files, records read, pairs the rule
produced and dropped counts by reason; `problems` are rows that could not be used at all (malformed, missing
field), which `validate_rows` skips or refuses. Drops of the published rule (ties, non-numeric ratings,
HA-DPO's already-correct POPE answers) are not problems: they are counted in `.info["rule_dropped"]`.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from halbench.errors import DataError
from halbench.training.pref_data import (halbench_jsonl, ha_dpo, llava_rlhf, povid, readers, rlaif_v, trl_conv,
                                         vlfeedback)
from halbench.training.pref_data.base import (Context, Format, LoadedPairs, PreferenceRow, Problem, count_kinds,
                                              iter_pairs)

FORMATS: dict[str, Format] = {f.name: f for f in (
    vlfeedback.FORMAT, llava_rlhf.FORMAT, povid.FORMAT, ha_dpo.FORMAT, rlaif_v.RLHF_V, trl_conv.FORMAT,
    rlaif_v.RLAIF_V, halbench_jsonl.FORMAT)}
RULE_KINDS = ("tie", "non-numeric rating", "already correct")
__all__ = ["FORMATS", "load", "split_spec", "detect", "LoadedPairs", "PreferenceRow", "Problem"]


def split_spec(source: str | Path, data_format: str | None = None) -> tuple[str, str | None]:
    """'vlfeedback::data/' -> ('data/', 'vlfeedback'); an explicit data_format wins."""
    text = str(source)
    if "::" in text:
        fmt, _, rest = text.partition("::")
        return rest, data_format or fmt
    return text, data_format


def get_format(name: str) -> Format:
    key = name.strip().lower().replace("_", "-")
    key = {"silkie": "vlfeedback", "llava-human-preference": "llava-rlhf", "hadpo": "ha-dpo",
           "jsonl": "halbench"}.get(key, key)
    if key not in FORMATS:
        raise DataError(f"unknown preference data format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[key]


def detect(first: dict[str, Any]) -> Format | None:
    return next((f for f in FORMATS.values() if f.detect(first)), None)


def _describe_unknown(first: dict[str, Any], where: str) -> DataError:
    known = "; ".join(f"{f.name} ({', '.join(f.required)})" for f in FORMATS.values())
    return DataError(f"cannot tell the preference layout: fields {sorted(first)} match none of: {known}. "
                     "Pass --data-format to force one", path=where)


def check_forced(fmt: Format, first: dict[str, Any], where: str) -> None:
    if not fmt.detect(first):
        missing = [f for f in fmt.required if f.split(" ")[0] not in first] or list(fmt.required)
        raise DataError(f"--data-format {fmt.name}: the first row lacks field(s) {missing} of that layout "
                        f"(it has {sorted(first)})", path=where, line=1)


def _choose(source: readers.Source, forced: Format | None) -> tuple[Format, list[Path], list[dict[str, str]]]:
    """The layout and the files holding it; files of another layout in a folder are listed as ignored."""
    if source.dataset is not None:
        first = readers.first_record(source)
        if first is None:
            raise DataError("dataset has no rows", path=source.label)
        fmt = forced or detect(first)
        if fmt is None:
            raise _describe_unknown(first, source.label)
        if forced:
            check_forced(forced, first, source.label)
        return fmt, [], []
    chosen: Format | None = forced
    used, ignored = [], list(source.ignored)
    for f in source.files:
        first = readers.first_record(source, f)
        found = detect(first) if first is not None else None
        if first is None:
            ignored.append({"file": str(f), "why": "no records"})
        elif chosen is None and found is not None:
            chosen = found
            used.append(f)
        elif chosen is not None and chosen.detect(first):
            used.append(f)
        elif len(source.files) == 1:
            if forced:
                check_forced(forced, first, str(f))
            raise _describe_unknown(first, str(f))
        else:
            ignored.append({"file": str(f), "why": f"layout {found.name if found else 'unknown'}"})
    if forced is not None and not used:
        for f in source.files:  # the first file's missing fields say why the forced layout does not fit
            first = readers.first_record(source, f)
            if first is not None:
                check_forced(forced, first, str(f))
    if chosen is None or not used:
        raise DataError(f"no file holds a known preference layout (ignored: {ignored})", path=source.label)
    return chosen, used, ignored


def load(source: str | Path, image_root: str | Path | None = None, data_format: str | None = None,
         split: str = "train", limit: int | None = None) -> tuple[LoadedPairs, list[Problem]]:
    """Pairs of `source` by its published rule, plus the unusable rows (see the module doc). `limit`: read
    only the first N records (pairs of those records are all kept)."""
    spec, fmt_name = split_spec(source, data_format)
    src = readers.open_source(spec, split)
    fmt, files, ignored = _choose(src, get_format(fmt_name) if fmt_name else None)
    ctx = Context(Path(image_root) if image_root else src.image_root)
    if fmt.prepare is not None:
        fmt.prepare(ctx, files)
    rows: list[PreferenceRow] = []
    drops: list[Problem] = []
    recs = tqdm(readers.records(src, files if files else None), desc=f"reading {fmt.name} data", unit=" rec",
                disable=None, leave=False)
    n_records = iter_pairs(islice(recs, limit) if limit else recs, fmt, ctx, rows, drops)
    rule = [p for p in drops if p.kind in RULE_KINDS]
    problems = [p for p in drops if p.kind not in RULE_KINDS]
    single = len(files) <= 1
    if single:  # one file: row numbers alone locate a problem (keeps `source:row` messages short)
        for p in problems:
            p.file = ""
    info = {"format": fmt.name, "rule": fmt.rule, "source": str(spec), "files": [str(f) for f in files],
            "ignored_files": ignored, "n_records": n_records, "n_pairs_from_rule": len(rows),
            "rule_dropped": count_kinds(rule), "n_multi_turn": sum(1 for r in rows if r.extra.get("history")),
            "image_root": str(ctx.image_root) if ctx.image_root else None}
    return LoadedPairs(rows, info), problems
