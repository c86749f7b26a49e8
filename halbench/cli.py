"""The `halbench` command line (click; options declared in decorators, validation in click types).

Defaults < --config FILE (YAML, fed to click's default_map) < flags. User errors (HalbenchError) print one
clear message and exit 2; nothing half-written is left behind.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from halbench import __version__, cli_train, registry
from halbench.cli_common import HalbenchGroup, _reports, config_option, eval_options, model_options, run_eval
from halbench.errors import HalbenchError, NotAvailableError


@click.group(cls=HalbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halbench")
def main() -> None:
    """Measure and reduce hallucination in vision-language models.

    With no --model, commands run on the embedded default world (offline, CPU)."""
    from halbench.quiet import silence_library_noise

    silence_library_noise()


@main.command("eval")
@config_option
@model_options
@eval_options
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default runs/<model>/<tasks>; re-running resumes).")
@click.option("--overwrite", is_flag=True, help="Delete an existing run directory first.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.html.")
def eval_cmd(**kw: Any) -> None:
    """Evaluate a model on hallucination benchmarks and write a run directory + report."""
    out = run_eval(**kw)
    click.echo(f"results: {out / 'results.json'}")


# -- report -------------------------------------------------------------------------------------------
@main.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="HTML file (default: report.html in the train-and-eval / train folder named, else in the "
                   "last run, else in the training folder).")
@click.option("--training-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A training directory (metrics.jsonl, status.json) to plot.")
@click.option("--label", "labels", multiple=True,
              help="Name of each eval run, in order (repeat; or write DIR=LABEL). One label on several runs "
                   "groups them as seeds of one method.")
@click.option("--table", "tables", multiple=True, type=click.Path(dir_okay=False),
              help="Also write the summary table: .md (Markdown) or .csv (repeatable).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write the table as CSV.")
def report_cmd(runs: tuple[str, ...], output: str | None, training_dir: str | None, labels: tuple[str, ...],
               tables: tuple[str, ...], csv_path: str | None) -> None:
    """Build one self-contained HTML report for RUNS; the first is the base of comparisons.

    RUNS may be eval runs, a training folder, or a train-and-eval folder (its base/, trained/ and train/).
    A comparison also writes comparison.json (length-matched controls included) beside the HTML."""
    from halbench.reports.inputs import resolve

    inputs = resolve(list(runs), list(labels))
    training = training_dir or inputs.training
    out = Path(output) if output else inputs.default_output()
    cmp_path = out.parent / "comparison.json" if out.name == "report.html" else out.with_suffix(".json")
    path = _reports().write_report(inputs.runs, out, training_dir=training, labels=inputs.labels,
                                   comparison_json=cmp_path, tables=[*tables, *([csv_path] if csv_path else [])])
    click.echo(f"report: {path}")
    if len(inputs.runs) > 1:
        click.echo(f"comparison: {cmp_path}")


# -- score --------------------------------------------------------------------------------------------
@main.command("score")
@click.argument("task")
@click.option("--predictions", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL of model outputs (POPE: question_id,text; CHAIR: image_id,caption).")
@click.option("--data", type=click.Path(exists=True), default=None, help="POPE: the official question file; CHAIR: an optional image list the predictions must match.")
@click.option("--gt", type=click.Path(exists=True), default=None, help="Precomputed {image_id: [objects]} JSON.")
@click.option("--coco-annotations", type=click.Path(exists=True, file_okay=False), default=None,
              help="COCO annotations dir (instances_*.json + captions_*.json).")
@click.option("--variant", default=None, help="Parsing / pipeline variant (see `halbench tasks`).")
@click.option("--synonyms", default=None, help="Synonym list: coco2018, objhal_refined or a path.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as one JSON object.")
def score_cmd(task: str, predictions: str, as_json: bool, **kw: Any) -> None:
    """Score a saved predictions file without any model."""
    cls = registry.load("task", task)
    if not hasattr(cls, "score_predictions"):
        raise NotAvailableError(f"task {task!r} does not support scoring saved predictions yet")
    kw = {k: v for k, v in kw.items() if v is not None}
    metrics = cls.score_predictions(predictions, **kw)
    if as_json:
        from halbench.runs import strict_json

        click.echo(strict_json(metrics, redact_urls=False))  # NaN -> null: any JSON parser reads it
    else:
        for k, v in metrics.items():
            click.echo(f"{k:>28}  {v}")


# -- listings -----------------------------------------------------------------------------------------
@main.command("tasks")
def tasks_cmd() -> None:
    """List tasks with their variants and metric directions."""
    for name in registry.names("task"):
        try:
            cls = registry.load("task", name)
        except NotAvailableError as e:
            click.echo(f"{name}  (not available: {e})")
            continue
        click.echo(f"{name}")
        for v, desc in cls.variants.items():
            click.echo(f"    variant {v:<14} {desc}")
        for root in getattr(cls, "data_roots", ()):
            click.echo(f"    data    --{root}-root DIR (without it: the embedded world, for the embedded model)")
        for m in cls.metrics:
            click.echo(f"    {m.arrow} {m.name:<24} {m.description}")
    try:  # protocol presets (--protocol NAME), from the task package
        for line in importlib.import_module("halbench.tasks.protocols").describe_lines():
            click.echo(line)
    except ImportError as e:
        click.echo(f"protocols  (not available: {e})")


@main.command("models")
def models_cmd() -> None:
    """List model backends."""
    for name in registry.names("model"):
        try:
            cls = registry.load("model", name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        except NotAvailableError as e:
            doc = f"(not available: {e})"
        click.echo(f"{name:<8} {doc}")


@main.command("methods")
def methods_cmd() -> None:
    """List training methods."""
    for name in registry.names("method"):
        try:
            m = registry.load("method", name)
            click.echo(f"{name:<10} {getattr(m, 'paper', '')}")
        except NotAvailableError as e:
            click.echo(f"{name:<10} (not available: {e})")


@main.command("setup-nltk")
@click.option("--from", "source", type=click.Path(exists=True, file_okay=False), default=None,
              help="Copy from this offline NLTK data folder instead of downloading.")
def setup_nltk_cmd(source: str | None) -> None:
    """Copy the NLTK data CHAIR needs (WordNet 3.0, POS tagger) into your own NLTK data folder.

    Not needed to run CHAIR: halbench ships both (used when no NLTK folder of yours has them)."""
    from halbench.nltk_setup import ensure_nltk_data, missing_resources

    still = ensure_nltk_data(source, echo=click.echo)
    if still and source:
        raise HalbenchError(f"{source}: no {', '.join(still)} there (expected an NLTK data folder with "
                            "corpora/wordnet and taggers/averaged_perceptron_tagger_eng, as folders or .zip)")
    if still and not missing_resources():
        click.echo(f"NLTK data: not in your NLTK folders ({', '.join(still)}); halbench's bundled copy is used")
        return
    if still:
        raise HalbenchError(f"NLTK data missing: {', '.join(still)}; run `halbench setup-nltk --from DIR` with an "
                            "NLTK data folder (air-gapped machines) or reinstall halbench (it bundles them)")
    click.echo("NLTK data: ok")


def _register_plugin_commands() -> None:
    """Sub-command groups that live next to their feature (world recipes, BDHS pair generation)."""
    for module, attr in (("halbench.world.cli", "world"), ("halbench.training.cli", "bdhs"),
                         ("halbench.training.data_cli", "data"), ("halbench.models.convert", "convert")):
        try:
            main.add_command(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as e:
            main.add_command(_unavailable_command(attr, f"{module}: {e}"))


def _unavailable_command(name: str, why: str) -> click.Command:
    """A placeholder that says clearly the feature is missing from this install (never pretends to run)."""

    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"(not available in this install: {why})")
    def cmd() -> None:
        raise NotAvailableError(f"`halbench {name}` is not available in this install ({why})")

    return cmd


for _cmd in (cli_train.train_cmd, cli_train.train_and_eval_cmd):
    main.add_command(_cmd)
_register_plugin_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
