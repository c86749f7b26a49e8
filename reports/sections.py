"""One report section per task: metrics with CIs and deltas, counts, breakdowns, plots, artifacts, views."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from halbench.reports.breakdowns import chair_class_frequency, mmhal_by_type, pope_by_split, reward_summary
from halbench.reports.groups import group_indices, group_table
from halbench.reports.kinds import KINDS, Kind, StatTable, first_missing, is_ok
from halbench.reports.length_control import CAPTION_KINDS, compare
from halbench.reports.length_view import comparison_json, control_table, length_table, summary_sentence
from halbench.reports.loading import LoadedRun
from halbench.reports.metrics import MetricTable, RunTask, flatten_metrics
from halbench.reports.model import Figure, Table, TaskSection
from halbench.reports.thumbs import embed_artifact
from halbench.reports.views import ViewContext, views_for


@dataclass
class SectionContext:
    views: ViewContext
    n_boot: int
    seed: int


def task_kind(key: str, runs: list[LoadedRun]) -> str:
    for run in runs:
        name = ((run.tasks.get(key) or {}).get("task") or {}).get("name")
        if isinstance(name, str) and name:
            return name
    return key.split(":")[0]


def _run_task(run: LoadedRun, key: str, kind: Kind | None, notes: list[str]) -> RunTask:
    entry = run.tasks.get(key)
    entry = entry if isinstance(entry, dict) else None
    records = run.records(key)
    ok = [r for r in records if isinstance(r, dict) and is_ok(r)]
    table = None
    if kind is not None and ok:
        scored = [r for r in ok if kind.scored(r)]
        missing = first_missing(kind, scored)
        where = run.run.samples_path(key)
        if missing is not None:
            notes.append(f"{run.label}: record id {scored[missing[0]].get('id')!r} in {where} lacks field "
                         f"{missing[1]!r}; per-sample statistics and views skipped for this run")
        else:
            try:
                table = StatTable.of(kind, scored)
            except (TypeError, ValueError, KeyError) as e:
                notes.append(f"{run.label}: records in {where} are malformed ({e!r}); "
                             "per-sample statistics and views skipped for this run")
    if entry is not None and not records:
        notes.append(f"{run.label}: no per-sample records (samples/{key}.jsonl), so no CIs or per-sample views")
    metrics = flatten_metrics(entry.get("metrics")) if entry else {}
    return RunTask(run.label, run.run.path, entry, records, ok, table, metrics)


def _count(rt: RunTask, name: str) -> str:
    if rt.entry is None and not rt.records:
        return "—"
    for src in (rt.entry or {}, (rt.entry or {}).get("metrics") or {}):
        if isinstance(src.get(name), int):
            return str(src[name])
    return str(len(rt.records) if name == "n_samples" else len(rt.records) - len(rt.ok))


def counts_table(rts: list[RunTask]) -> Table:
    rows = [["samples"] + [_count(rt, "n_samples") for rt in rts],
            ["generation errors"] + [_count(rt, "n_errors") for rt in rts]]
    if len(rts) > 1:
        rows.append(["paired with base (by id)", "—"] +
                    [str(len(rt.pairs(rts[0]))) for rt in rts[1:]])
    return Table("Samples", [""] + [rt.label for rt in rts], rows)


def error_notes(rts: list[RunTask]) -> list[str]:
    notes = []
    for rt in rts:
        errs = Counter(str(r.get("error")) for r in rt.records if isinstance(r, dict) and not is_ok(r))
        if errs:
            shown = "; ".join(f"{msg[:160]!r} ×{n}" for msg, n in errs.most_common(3))
            notes.append(f"{rt.label}: {sum(errs.values())} generation error(s), not scored: {shown}")
    return notes


def figures(rts: list[RunTask], key: str) -> list[Figure]:
    out = []
    for rt in rts:
        arts = (rt.entry or {}).get("artifacts") or {}
        if not isinstance(arts, dict):
            continue
        for label, rel in arts.items():
            uri, note = embed_artifact(rt.run_dir, rt.run_dir / "artifacts" / key, rel)
            out.append(Figure(str(label), rt.label, uri, note))
    return out


def _breakdowns(section: TaskSection, kind: str, usable: list[RunTask]) -> None:
    runs = [(rt.label, [r for r in rt.ok if rt.table.kind.scored(r)]) for rt in usable]
    if not runs:
        return
    if kind == "pope":
        section.tables.append(pope_by_split(runs))
    elif kind in ("chair", "object_halbench"):
        section.charts.append(chair_class_frequency(runs))
    elif kind == "mmhal":
        section.tables.append(mmhal_by_type(runs))
    elif kind == "reward_analysis":
        table, charts = reward_summary(runs)
        section.tables.append(table)
        section.charts.extend(charts)


def _length_controls(section: TaskSection, key: str, usable: list[RunTask], ctx: SectionContext) -> None:
    """Caption tasks in a comparison: length deltas and the length-matched base, per run (DESIGN.md 7)."""
    if section.kind not in CAPTION_KINDS or len(usable) < 2:
        return
    base, kind = usable[0], usable[0].table.kind
    for rt in usable[1:]:
        pairs = [(a, b) for a, b in rt.pairs(base) if kind.scored(a) and kind.scored(b)]
        if len(pairs) < 2:
            section.notes.append(f"{rt.label}: fewer than 2 captions pair with {base.label}; no length control")
            continue
        c = compare(key, section.kind, base.entry, base.label, rt.label, pairs, ctx.n_boot, ctx.seed)
        section.tables.append(length_table(c, ctx.n_boot))
        if c.controls:
            section.tables.append(control_table(c, ctx.n_boot))
        section.summary.append(summary_sentence(c))
        section.comparisons.append(comparison_json(c))
        section.notes.extend(f"{rt.label}: {n}" for n in c.notes)


def build_section(index: int, key: str, runs: list[LoadedRun], ctx: SectionContext) -> TaskSection:
    kind_name = task_kind(key, runs)
    kind = KINDS.get(kind_name)
    notes: list[str] = []
    rts = [_run_task(run, key, kind, notes) for run in runs]
    present = [rt for rt in rts if rt.entry is not None or rt.records]
    anchor = f"task-{index}-" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    mt = MetricTable(kind, rts, ctx.n_boot, ctx.seed)
    rows = mt.rows()
    declared = {name for rt in rts for name in ((rt.entry or {}).get("directions") or {})}
    headline = [r for r in rows if r.name in declared] if declared else rows
    section = TaskSection(key, kind_name if kind else "generic", anchor, key, headline, counts_table(rts),
                          more_metrics=[r for r in rows if r not in headline])
    section.seed_groups = group_table(mt, headline, group_indices([run.group for run in runs]))
    if kind is None:
        notes.append(f"task kind {kind_name!r} is not known to the report: results.json metrics only")
    usable = [rt for rt in present if rt.table is not None]
    _length_controls(section, key, usable, ctx)
    _breakdowns(section, section.kind, usable)
    section.figures = figures(rts, key)
    if usable:
        section.views = views_for(section.kind, ctx.views,
                                  [(rt.label, rt.run_dir, rt.ok, rt.pairs(usable[0])) for rt in usable])
    section.notes = notes + error_notes(rts) + section.notes  # + the length controls' notes
    return section
