"""What a training (or BDHS pair-generation) folder says about its data: rows kept and dropped and why,
pair statistics, BDHS acceptance statistics, and the resolved config — as report tables.

Files read (all optional; a missing or unreadable one becomes a note, never an exception):
- data_report.json (training/data.py ValidationReport.to_json: source, n_rows, n_kept, n_skipped,
  n_truncated_responses, problems [{row, reason}]);
- the preference pairs themselves: pairs.jsonl / bdhs/pairs.jsonl in the folder (the pairs BDHS generated),
  else the data report's `source` when it is a JSONL file;
- stats.json or bdhs/stats.json (training/bdhs.py pair_stats) and similarity.png beside it;
- config.json (training/loop.py run_training: the method's resolved Config + model fingerprint).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halbench.reports.model import Figure, Table
from halbench.reports.thumbs import embed_artifact

MAX_PAIR_BYTES = 200_000_000  # pairs files larger than this are not read for statistics
_REASON_EXAMPLES = 3


@dataclass
class TrainingData:
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    config: str = ""
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{path}: unreadable ({e})")
        return None


def rows_table(rep: dict[str, Any]) -> list[Table]:
    """Rows kept and dropped, then the reasons rows were dropped (counted, with example row numbers)."""
    rows = [["source", str(rep.get("source", "?"))], ["rows read", str(rep.get("n_rows", "?"))],
            ["rows kept", str(rep.get("n_kept", "?"))], ["rows dropped", str(rep.get("n_skipped", "?"))],
            ["responses truncated to fit max_length", str(rep.get("n_truncated_responses", "?"))]]
    out = [Table("Training data: rows kept and dropped", ["", "value"], rows)]
    problems = [p for p in rep.get("problems") or [] if isinstance(p, dict)]
    if problems:
        by_reason: dict[str, list[str]] = {}
        for p in problems:
            by_reason.setdefault(str(p.get("reason")), []).append(str(p.get("row")))
        reasons = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
        out.append(Table("Why rows were dropped", ["reason", "rows", "e.g. row numbers"],
                         [[r, str(len(ids)), ", ".join(ids[:_REASON_EXAMPLES])] for r, ids in reasons]))
    return out


def _pairs_file(folder: Path, rep: dict[str, Any] | None) -> Path | None:
    src = Path(str(rep.get("source"))) if rep and rep.get("source") else None
    # pairs a method generated (BDHS) are what it trained on; the data report's source is their input
    for cand in [folder / "pairs.jsonl", folder / "bdhs" / "pairs.jsonl"] + ([src] if src else []):
        if cand.is_file() and cand.suffix == ".jsonl":
            return cand
    return None


def pair_statistics(path: Path) -> Table | None:
    """Length of chosen vs rejected answers (words), and how many pairs differ only in length."""
    if path.stat().st_size > MAX_PAIR_BYTES:
        return None
    chosen, rejected, identical, longer = [], [], 0, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
            continue
        c, r = row["chosen"].split(), row["rejected"].split()
        chosen.append(len(c))
        rejected.append(len(r))
        identical += c == r
        longer += len(r) > len(c)
    if not chosen:
        return None
    n = len(chosen)
    rows = [["pairs", str(n)], ["mean words, chosen", f"{sum(chosen) / n:.2f}"],
            ["mean words, rejected", f"{sum(rejected) / n:.2f}"],
            ["rejected longer than chosen", f"{longer} ({100 * longer / n:.1f}%)"],
            ["chosen == rejected", str(identical)]]
    return Table(f"Preference pairs ({path.parent.name}/{path.name})", ["", "value"], rows,
                 "If rejected answers are systematically longer, a method can learn 'say less' rather than "
                 "'say what is there': compare the length-matched control in the comparison report.")


def bdhs_tables(folder: Path, notes: list[str]) -> tuple[list[Table], list[Figure]]:
    for d in (folder / "bdhs", folder):
        stats = _read_json(d / "stats.json", notes)
        if isinstance(stats, dict) and "n_pairs" in stats:
            break
    else:
        return [], []
    attempts = ", ".join(f"{k}: {v}" for k, v in (stats.get("attempts_per_pair") or {}).items()) or "—"
    sim = stats.get("mean_similarity_accepted")
    rows = [["rows", str(stats.get("n_rows"))], ["pairs accepted", str(stats.get("n_pairs"))],
            ["rows dropped (no acceptable rejected answer)", str(stats.get("n_dropped"))],
            ["acceptance rate", f"{100 * float(stats.get('acceptance_rate') or 0):.1f}%"],
            ["attempts per accepted pair", attempts], ["accepted from the unguided last attempt", str(stats.get("n_unguided"))],
            ["yes/no flipped", str(stats.get("n_flipped"))],
            ["mean similarity of accepted pairs", "—" if sim is None else f"{sim:.3f}"],
            ["similarity threshold (rejected at or above)", str(stats.get("threshold"))]]
    figures = []
    if (d / "similarity.png").is_file():
        uri, note = embed_artifact(d, d, "similarity.png")
        figures.append(Figure("BDHS: similarity of candidates to the reference answer", str(d), uri, note))
    return [Table("BDHS pair generation", ["", "value"], rows)], figures


def training_data(folder: str | Path) -> TrainingData:
    folder = Path(folder)
    out = TrainingData()
    rep = _read_json(folder / "data_report.json", out.notes)
    if isinstance(rep, dict):
        out.tables += rows_table(rep)
    bdhs, out.figures = bdhs_tables(folder, out.notes)
    out.tables += bdhs
    pairs = _pairs_file(folder, rep if isinstance(rep, dict) else None)
    if pairs is not None:
        table = pair_statistics(pairs)
        out.tables += [table] if table else []
    cfg = _read_json(folder / "config.json", out.notes)
    if cfg is not None:
        out.config = json.dumps(cfg, indent=2, ensure_ascii=False, default=str)
    return out


def reasons_counter(rep: dict[str, Any]) -> Counter:
    """Dropped rows per reason (for summaries and tests)."""
    return Counter(str(p.get("reason")) for p in rep.get("problems") or [] if isinstance(p, dict))
