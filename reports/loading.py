"""Reading what a report is built from: run directories (halbench.runs layout) and a training folder.

A run needs results.json (a finished run; otherwise DataError naming the folder). Per-sample records are
read lazily, once per task. A training folder is best-effort: a failed or half-written training must still
give a report that says what failed, so its problems become notes, never exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halbench.errors import DataError
from halbench.runs import RunDir, read_records


@dataclass
class LoadedRun:
    label: str
    run: RunDir
    results: dict[str, Any]
    config_text: str
    _records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    group: str | None = None  # runs given the same label: seeds of one method (groups.py)

    @property
    def tasks(self) -> dict[str, Any]:
        tasks = self.results.get("tasks")
        return tasks if isinstance(tasks, dict) else {}

    def records(self, key: str) -> list[dict[str, Any]]:
        if key not in self._records:
            self._records[key] = read_records(self.run.samples_path(key))  # read-only: never repairs
        return self._records[key]

    def task_keys(self) -> list[str]:
        keys = dict.fromkeys(self.tasks)
        keys.update(dict.fromkeys(p.stem for p in sorted((self.run.path / "samples").glob("*.jsonl"))))
        return list(keys)


def load_runs(paths: list[str | Path], labels: list[str | None] | None = None) -> list[LoadedRun]:
    """Runs in order; `labels` (None entries: folder names) name them, and a label given to several runs
    makes them one seed group, each run then labelled "LABEL #k"."""
    runs, names = [], unique_labels([Path(p) for p in paths])
    given = list(labels or []) + [None] * (len(paths) - len(labels or []))
    groups = [g if g is not None and given.count(g) > 1 else None for g in given]
    seen: dict[str, int] = {}
    for i, g in enumerate(given):
        if g is not None and groups[i]:
            seen[g] = seen.get(g, 0) + 1
            names[i] = f"{g} #{seen[g]}"
        elif g is not None:
            names[i] = g
    for path, label, group in zip(paths, names, groups):
        rd = RunDir(path)
        if not rd.path.is_dir():
            raise DataError("run directory not found", path=rd.path)
        results = rd.read_results()
        if not isinstance(results, dict):
            raise DataError("results.json is not a JSON object", path=rd.results_path)
        config = rd.config_path.read_text(encoding="utf-8", errors="replace") if rd.config_path.exists() else ""
        runs.append(LoadedRun(label, rd, results, config, group=group))
    return runs


def unique_labels(paths: list[Path]) -> list[str]:
    """Folder names, widened with the parent folder (then an index) where two runs would share a label."""
    names = [p.resolve().name or str(p) for p in paths]
    labels = [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} ({seen[lab]})"
    return labels


@dataclass
class Training:
    path: Path
    status: str  # ok | failed | unknown
    error: str
    checkpoint: str
    steps: list[dict[str, Any]]
    notes: list[str]
    kind: str = "training"  # training | pairs (`halbench bdhs generate` output: pairs.jsonl + stats.json)


def is_pairs_dir(p: Path) -> bool:
    return (p / "pairs.jsonl").is_file() and (p / "stats.json").is_file() and not (p / "status.json").exists()


def load_training(path: str | Path) -> Training:
    p = Path(path)
    if is_pairs_dir(p):  # pair generation has no steps, status or checkpoint: it succeeded if it wrote pairs
        return Training(p, "ok", "", "", [], [], "pairs")
    notes: list[str] = []
    status, error, checkpoint = "unknown", "", ""
    status_path = p / "status.json"
    if not p.is_dir():
        notes.append(f"training folder {p} does not exist")
    elif not status_path.exists():
        notes.append(f"{status_path}: missing (training did not finish or crashed before writing its status)")
    else:
        try:
            st = json.loads(status_path.read_text(encoding="utf-8"))
            status = str(st.get("status")) if st.get("status") in ("ok", "failed") else "unknown"
            error, checkpoint = str(st.get("error") or ""), str(st.get("checkpoint") or "")
            if status == "unknown":
                notes.append(f"{status_path}: unexpected status {st.get('status')!r}")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
            notes.append(f"{status_path}: unreadable ({e})")
    steps: list[dict[str, Any]] = []
    try:
        steps = [s for s in read_records(p / "metrics.jsonl") if isinstance(s, dict)]
    except DataError as e:
        notes.append(f"training metrics unreadable: {e}")
    if p.is_dir() and not (p / "metrics.jsonl").exists():
        notes.append(f"{p / 'metrics.jsonl'}: missing, no training curves")
    return Training(p, status, error, checkpoint, steps, notes)
