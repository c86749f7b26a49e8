"""build(run_dirs, training_dir) -> ReportData: everything the report shows, as plain data.

One run gives a single-run report; several runs compare each against the first (the base). A training
folder (OUT/train of train-and-eval: metrics.jsonl + status.json) adds training curves and, when training
failed, says what failed while still showing the base results.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from halbench import __version__
from halbench.errors import HalbenchError

from halbench.reports.loading import LoadedRun, Training, load_runs, load_training
from halbench.reports.model import ReportData, RunInfo, Table, TrainingInfo
from halbench.reports.plots import Chart, line_chart
from halbench.reports.sections import SectionContext, build_section
from halbench.reports.stats import DEFAULT_BOOT
from halbench.reports.thumbs import Thumbnailer
from halbench.reports.training_data import training_data
from halbench.reports.views import ViewContext

#: training curves drawn together; any other numeric key gets its own chart
CURVE_GROUPS = [("Loss", ("loss",)), ("Rewards", ("rewards/chosen", "rewards/rejected")),
                ("Reward margin", ("rewards/margins",)), ("KL", ("kl",)), ("Reward accuracy", ("rewards/accuracies",))]
MAX_CURVES = 12
_NOT_CURVES = {"step", "epoch", "global_step"}


def build(run_dirs: Iterable[str | Path] | str | Path, training_dir: str | Path | None = None, *,
          n_boot: int = DEFAULT_BOOT, seed: int = 0, max_thumbs: int = 300,
          labels: list[str | None] | None = None) -> ReportData:
    """Read runs (and a training folder) into a ReportData; raises DataError for unreadable runs.
    `labels` name the runs (None: the folder name); one label on several runs groups them as seeds."""
    paths = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(p) for p in run_dirs]
    if not paths and training_dir is None:
        raise HalbenchError("nothing to report: give at least one run directory or a training folder")
    runs = load_runs(paths, labels)
    thumbs = Thumbnailer(max_thumbs)
    ctx = SectionContext(ViewContext(thumbs), n_boot, seed)
    keys = list(dict.fromkeys(k for run in runs for k in run.task_keys()))
    tasks = [build_section(i, key, runs, ctx) for i, key in enumerate(keys)]
    ctx.views.finish()
    training = training_info(load_training(training_dir)) if training_dir is not None else None
    mode = "comparison" if len(runs) > 1 else "single" if runs else "training"
    return ReportData(
        title=_title(runs, training), mode=mode,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"), generator=f"halbench {__version__}",
        runs=[run_info(r) for r in runs], training=training, tasks=tasks, warnings=comparison_warnings(runs),
        thumbs=thumbs.data, method_note=_method_note(n_boot, seed, thumbs))


def _title(runs: list[LoadedRun], training: TrainingInfo | None) -> str:
    if len(runs) > 1:
        return "halbench comparison: " + " vs ".join(r.label for r in runs)
    if runs:
        return f"halbench report: {runs[0].label}"
    if training is not None and training.kind == "pairs":
        return "halbench BDHS pair generation report"
    return "halbench training report"


def _method_note(n_boot: int, seed: int, thumbs: Thumbnailer) -> str:
    note = (f"Intervals: 95% percentile bootstrap over samples (B={n_boot}, seed {seed}), shown only where the "
            "metric recomputed from per-sample records equals results.json. Deltas: run minus base; paired by "
            "sample id (McNemar exact test for POPE accuracy, paired bootstrap otherwise). Rates are shown ×100.")
    if thumbs.capped:
        note += f" Thumbnails: the first {thumbs.max_images} images; {thumbs.capped} more rows show file names."
    if thumbs.missing:
        note += f" {thumbs.missing} image(s) could not be read and show file names."
    return note


def run_info(run: LoadedRun) -> RunInfo:
    res = run.results
    model = res.get("model") if isinstance(res.get("model"), dict) else {}
    details = {k: v for k, v in res.items() if k != "tasks"}
    details["tasks"] = {k: {f: v for f, v in t.items() if f not in ("metrics", "directions")}
                        for k, t in run.tasks.items() if isinstance(t, dict)}
    return RunInfo(run.label, str(run.run.path), str(model.get("model_id", "?")), str(model.get("backend", "?")),
                   str(model.get("fingerprint", "?")), str(res.get("created", "?")),
                   json.dumps(details, indent=2, default=str, ensure_ascii=False), run.config_text,
                   str(res.get("data_source") or ""))


def _fingerprints(run: LoadedRun, key: str) -> dict[str, Any]:
    fp = (run.tasks.get(key) or {}).get("fingerprints")
    return fp if isinstance(fp, dict) else {}


def comparison_warnings(runs: list[LoadedRun]) -> list[str]:
    """Reasons a comparison may not be like for like."""
    if len(runs) < 2:
        return []
    base, out = runs[0], []
    base_fp = (base.results.get("model") or {}).get("fingerprint")
    for other in runs[1:]:
        if base_fp and (other.results.get("model") or {}).get("fingerprint") == base_fp:
            out.append(f"{other.label} has the same model fingerprint as {base.label}: the same weights were evaluated")
        for key in base.tasks:
            if key not in other.tasks:
                out.append(f"{other.label} has no results for task {key!r}")
                continue
            a, b = _fingerprints(base, key), _fingerprints(other, key)
            for what in ("data", "prompts"):
                if a.get(what) and b.get(what) and a.get(what) != b.get(what):
                    out.append(f"{key}: {what} fingerprints differ between {base.label} and {other.label}: "
                               "the runs did not answer the same questions, deltas are not like for like")
    return out


def _numeric_keys(steps: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for s in steps:
        keys.update({k: None for k, v in s.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_CURVES})
    return list(keys)


def _series(steps: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, s in enumerate(steps):
        v = s.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            x = s.get("step")
            xs.append(float(x) if isinstance(x, (int, float)) else float(i))
            ys.append(float(v))
    return xs, ys


def training_curves(steps: list[dict[str, Any]]) -> tuple[list[Chart], list[str]]:
    keys = _numeric_keys(steps)
    groups = [(t, [k for k in ks if k in keys]) for t, ks in CURVE_GROUPS]
    grouped = {k for _, ks in groups for k in ks}
    groups = [g for g in groups if g[1]] + [(k, [k]) for k in keys if k not in grouped]
    charts = [line_chart(title, [(k, *_series(steps, k)) for k in ks], "step") for title, ks in groups[:MAX_CURVES]]
    notes = [f"{len(groups) - MAX_CURVES} more logged series not drawn: "
             + ", ".join(t for t, _ in groups[MAX_CURVES:])] if len(groups) > MAX_CURVES else []
    return charts, notes


def training_info(t: Training) -> TrainingInfo:
    charts, notes = training_curves(t.steps)
    rows = []
    for k in _numeric_keys(t.steps):
        ys = _series(t.steps, k)[1]
        fin = [y for y in ys if math.isfinite(y)]  # a diverged run logs NaN: min/max of what is finite
        extremes = [f"{min(fin):.4g}", f"{max(fin):.4g}"] if fin else ["—", "—"]
        rows.append([k, f"{ys[0]:.4g}", f"{ys[-1]:.4g}", *extremes])
    final = Table("Logged values", ["series", "first", "last", "min", "max"], rows) if rows else None
    data = training_data(t.path)
    return TrainingInfo(str(t.path), t.status, t.error, t.checkpoint, len(t.steps), charts, final,
                        t.notes + notes + data.notes, data.tables, data.figures, data.config, t.kind)
