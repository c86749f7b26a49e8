"""`halbench data ...`: look at preference data before any training (no model is loaded).

    halbench data inspect SOURCE [--data-format F] [--image-root DIR] [--limit N] [--json]
    halbench data formats

SOURCE is anything `--data` takes: a file, a folder as published, a save_to_disk dir, a Hub dataset id (online),
or FORMAT::SOURCE. `inspect` reports the layout detected, records read, pairs the published rule produced and
dropped (by reason), images embedded/found/missing, and word-length statistics of prompt, chosen and rejected.
Token truncation depends on the model's tokenizer and max_length: training reports it in data_report.json.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import click

from halbench.training.pref_data import FORMATS, load
from halbench.training.pref_data.base import PreferenceRow, cache_root, count_kinds


@click.group("data", context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Preference data: published layouts, inspection before training."""


@data.command("formats")
def formats_cmd() -> None:
    """List the preference layouts halbench reads and their pair rules."""
    for f in FORMATS.values():
        click.echo(f"{f.name:<11} {f.source}\n{'':<11} fields: {', '.join(f.required)}\n{'':<11} rule: {f.rule}")


@data.command("inspect")
@click.argument("source")
@click.option("--data-format", default=None, help=f"Force a layout ({', '.join(FORMATS)}); default: inferred.")
@click.option("--image-root", type=click.Path(file_okay=False), default=None,
              help="Folder relative image paths resolve against (COCO train2017, VG, merged_images/...).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N records.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object.")
def inspect_cmd(source: str, data_format: str | None, image_root: str | None, limit: int | None,
                as_json: bool) -> None:
    """Rows, layout, images and lengths of SOURCE, and what the pair rule produced and dropped."""
    stats = inspect_source(source, data_format=data_format, image_root=image_root, limit=limit)
    click.echo(json.dumps(stats, indent=1) if as_json else render(stats))


def inspect_source(source: str, data_format: str | None = None, image_root: str | None = None,
                   limit: int | None = None) -> dict[str, Any]:
    rows, problems = load(source, image_root, data_format, limit=limit)
    info = rows.info
    identical = sum(1 for r in rows if r.chosen.strip() and _norm(r.chosen) == _norm(r.rejected))
    empty = sum(1 for r in rows if not (r.prompt.strip() and r.chosen.strip() and r.rejected.strip()))
    images = image_stats(rows)
    dropped = dict(info["rule_dropped"])
    for kind, n in count_kinds(problems).items():
        dropped[kind] = dropped.get(kind, 0) + n
    for kind, n in (("identical", identical), ("empty field", empty), ("missing image", images["rows_missing"])):
        if n:
            dropped[kind] = dropped.get(kind, 0) + n
    usable = sum(1 for r in rows if r.chosen.strip() and _norm(r.chosen) != _norm(r.rejected)
                 and r.prompt.strip() and r.rejected.strip() and not _missing(r))
    return {"source": source, "format": info["format"], "rule": info["rule"], "files": info["files"],
            "ignored_files": info["ignored_files"], "n_records": info["n_records"],
            "n_unparsable_rows": len(problems), "n_pairs_from_rule": info["n_pairs_from_rule"],
            "n_pairs_usable": usable, "dropped_by_reason": dict(sorted(dropped.items())),
            "n_multi_turn": info["n_multi_turn"], "images": images,
            "words": {k: length_stats([getattr(r, k) for r in rows]) for k in ("prompt", "chosen", "rejected")},
            "first_problems": [{"row": p.row, "reason": p.reason, **({"file": p.file} if p.file else {})}
                               for p in problems[:10]],
            "note": "token truncation depends on the model (max_length): `halbench train` reports it in "
                    "OUTPUT/train/data_report.json"}


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _missing(row: PreferenceRow) -> bool:
    return isinstance(row.image, str) and not Path(row.image).is_file()


def image_stats(rows: list[PreferenceRow]) -> dict[str, int]:
    """Per pair: image embedded in the data (bytes, written to the cache), a path found on disk, or missing."""
    cache = str(cache_root())
    embedded = sum(1 for r in rows if isinstance(r.image, str) and r.image.startswith(cache))
    missing = [r.image for r in rows if _missing(r)]
    none = sum(1 for r in rows if r.image is None)
    return {"rows_embedded": embedded, "rows_found": len(rows) - embedded - len(missing) - none,
            "rows_missing": len(missing), "rows_without_image": none,
            "unique_images": len({r.image for r in rows if isinstance(r.image, str)}),
            "unique_missing": len(set(missing)), **({"first_missing": missing[0]} if missing else {})}


def length_stats(texts: list[str]) -> dict[str, float]:
    n = [len(t.split()) for t in texts]
    if not n:
        return {"mean": 0.0, "median": 0.0, "min": 0, "max": 0}
    return {"mean": round(statistics.fmean(n), 2), "median": float(statistics.median(n)), "min": min(n), "max": max(n)}


def render(s: dict[str, Any]) -> str:
    img, drop = s["images"], s["dropped_by_reason"]
    ignored = ", ".join(f"{i['file']}: {i['why']}" for i in s["ignored_files"])
    lines = [f"source: {s['source']}  format: {s['format']}  ({s['rule']})",
             f"files: {len(s['files']) or '(dataset)'}" + (f", ignored: {len(s['ignored_files'])} ({ignored})"
                                                           if ignored else ""),
             f"records: {s['n_records']} (+{s['n_unparsable_rows']} unparsable)  pairs from rule: "
             f"{s['n_pairs_from_rule']}  usable: {s['n_pairs_usable']}",
             "dropped by reason: " + (", ".join(f"{k} {v}" for k, v in drop.items()) or "none"),
             f"images: {img['rows_embedded']} embedded, {img['rows_found']} found, {img['rows_missing']} missing, "
             f"{img['rows_without_image']} none ({img['unique_images']} unique)"
             + (f"; first missing: {img['first_missing']}" if img.get("first_missing") else "")]
    for k, v in s["words"].items():
        lines.append(f"{k + ' words:':<16} mean {v['mean']}, median {v['median']}, min {v['min']}, max {v['max']}")
    if s["n_multi_turn"]:
        lines.append(f"multi-turn rows: {s['n_multi_turn']} (training sees the last question; history in extra)")
    lines += [f"  {p.get('file') or s['source']}:{p['row']}: {p['reason']}" for p in s["first_problems"]]
    lines.append(f"note: {s['note']}")
    return "\n".join(lines)
