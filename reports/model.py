"""The plain data a report is made of (what build() returns and render() draws).

Everything is formatted text or numbers: templates do no arithmetic and no formatting decisions, so golden
tests on the HTML test the templates, and tests on these objects test the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from halbench.reports.plots import Chart


@dataclass
class Cell:
    """One run's value of one metric; for non-base runs also the change against the base run."""

    text: str  # display value ("85.20"), or "—" when the run lacks the metric
    ci: str = ""  # "[84.11, 86.30]" (95% bootstrap CI) or ""
    delta: str = ""  # "+1.20" in display units, "" for the base run
    delta_ci: str = ""
    p: str = ""  # "p=0.012 (McNemar exact)"
    verdict: str = "none"  # better | worse | same | none: drives colour
    significant: bool = False


@dataclass
class MetricRow:
    name: str
    arrow: str  # ↑ ↓ ·
    direction: str
    unit: str  # "×100" for rates, "" otherwise
    cells: list[Cell]
    note: str = ""  # why there is no CI


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    """An image a task wrote (artifact), embedded as a data URI."""

    label: str
    run: str
    uri: str | None
    note: str = ""


@dataclass
class View:
    """A paginated per-sample table; its rows travel as inline JSON (`payload`) drawn by report.js."""

    id: str
    title: str
    description: str
    n_rows: int
    payload: dict[str, Any]


@dataclass
class TaskSection:
    key: str
    kind: str  # pope | chair | object_halbench | mmhal | reward_analysis | generic
    anchor: str
    title: str
    metrics: list[MetricRow]  # the task's declared metrics (results.json directions): the summary
    counts: Table
    more_metrics: list[MetricRow] = field(default_factory=list)  # everything else it reported
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # plain sentences for the report's summary
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # length controls (comparison.json)
    seed_groups: Table | None = None  # runs sharing a label, one column each (groups.py)


@dataclass
class RunInfo:
    label: str
    path: str
    model_id: str
    backend: str
    fingerprint: str
    created: str
    details: str  # results.json minus tasks' metrics, pretty-printed JSON
    config: str  # config.yaml text, or "" when absent
    data_source: str = ""  # results.json data_source: what the run was scored on, in words


@dataclass
class TrainingInfo:
    path: str
    status: str  # ok | failed | unknown
    error: str
    checkpoint: str
    n_steps: int
    charts: list[Chart]
    final: Table | None
    notes: list[str] = field(default_factory=list)
    data_tables: list[Table] = field(default_factory=list)  # rows kept/dropped, pair statistics (training_data.py)
    figures: list[Figure] = field(default_factory=list)
    config: str = ""  # resolved config.json, pretty-printed
    kind: str = "training"  # training | pairs (a `halbench bdhs generate` folder)


@dataclass
class ReportData:
    title: str
    mode: str  # single | comparison | training
    generated: str  # ISO timestamp (scrubbed by golden tests)
    generator: str
    runs: list[RunInfo]
    training: TrainingInfo | None
    tasks: list[TaskSection]
    warnings: list[str]
    thumbs: dict[str, str]
    method_note: str
