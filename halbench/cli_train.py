"""`halbench train` and `halbench train-and-eval`.

train-and-eval lays out OUT/base (eval of the starting model), OUT/train (metrics.jsonl, status.json,
checkpoints), OUT/trained (eval of the trained checkpoint) and OUT/report.html comparing base and trained.
The report is written even when training fails; it then says what failed, and the command exits non-zero
(into OUT/report-failed.html when OUT/report.html is the comparison report of an earlier complete run: a failed
re-run never replaces a good report). A train dir holding another finished or checkpointed run is refused
before the base eval, and each eval checks its configuration before its model loads (halbench.preflight).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import traceback
import typing
from pathlib import Path
from typing import Any

import click
import yaml

from halbench import registry
from halbench.cli_common import (_reports, config_option, eval_options, model_options, resolve_world_option, run_eval,
                                 set_threads)
from halbench.distributed import dist_info
from halbench.errors import HalbenchError
from halbench.runs import atomic_write_json


def _parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        out[key.strip().replace("-", "_")] = yaml.safe_load(val) if val else val
    return out


def make_method_config(method: Any, values: dict[str, Any]) -> Any:
    """Build the method's Config dataclass, refusing unknown fields with the list of valid ones."""
    fields = {f.name for f in dataclasses.fields(method.Config)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise HalbenchError(f"unknown setting(s) {unknown} for method {method.name!r}; "
                            f"valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(method.Config)
    return method.Config(**{k: _coerce(k, v, hints.get(k)) for k, v in values.items() if v is not None})


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """--set values arrive as YAML scalars; YAML 1.1 reads '1e-4' as a string, so convert by field type."""
    base = {int: int, float: float, bool: bool}.get(hint) or next(
        (t for t in (float, int, bool) if t in typing.get_args(hint)), None)
    if base is None or not isinstance(value, str):
        return value
    try:
        if base is bool:
            return {"true": True, "false": False, "1": True, "0": False}[value.strip().lower()]
        return base(value)
    except (KeyError, ValueError) as e:
        raise HalbenchError(f"--set {name}={value!r}: expected {base.__name__}") from e


def method_values(model_spec: str | None, output_dir: Path, seed: int, data: str | None,
                  sets: tuple[str, ...], device: str, data_format: str | None = None,
                  image_root: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"output_dir": str(output_dir), "seed": seed}
    if model_spec:
        values["model"] = model_spec
    if data_format:  # checked now, before any eval or model load; travels as FORMAT::SOURCE in `data`
        if not data:
            raise HalbenchError("--data-format needs --data")
        importlib.import_module("halbench.training.pref_data").get_format(data_format)
        data = f"{data_format}::{data}"
    if data:
        values["data"] = data
    if image_root:
        values["image_root"] = image_root
    values.update(_parse_sets(sets))
    return values


def train_options(f):
    for opt in reversed([
        click.option("--method", required=True, help="Training method (see `halbench methods`)."),
        click.option("--data", default=None, help="Preference data: a file/folder as published, a saved HF dataset "
                     "dir, or a Hub dataset id (see `halbench data formats`), if the method uses it."),
        click.option("--data-format", default=None, help="Force the preference layout (default: inferred from "
                     "the fields; `halbench data formats`)."),
        click.option("--image-root", default=None, help="Folder relative image paths in --data resolve against "
                     "(COCO train2017, Visual Genome, merged_images/...)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A method Config field (repeatable)."),
    ]):
        f = opt(f)
    return f


@click.command("train")
@config_option
@model_options
@train_options
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option("--output-dir", type=click.Path(file_okay=False), required=True, help="Where checkpoints go.")
def train_cmd(model_spec, device, trust_remote_code, prefix_cache, threads, method, data, data_format, image_root,
              sets, seed, output_dir) -> None:
    """Train a model with an alignment method; prints the final checkpoint dir."""
    from halbench.preflight import check_text_file
    from halbench.run_lock import run_lock

    set_threads(threads, device)
    m = registry.load("method", method)
    cfg = make_method_config(m, method_values(model_spec, Path(output_dir), seed, data, sets, device, data_format,
                                              image_root))
    check_text_file(data, "preference data")
    _check_starting_model(model_spec)
    out = Path(output_dir)
    with run_lock(output_dir, enabled=dist_info().is_main):
        try:
            checkpoint = m.train(cfg)
        except Exception as e:  # noqa: BLE001 - the report must say what failed, whatever it was
            if not (out / "train").is_dir():
                raise  # refused before anything was written (bad data, config): nothing to report on
            _record_failure(out / "train", e)
            path = _reports().write_report([], _failure_report_path(out), training_dir=out / "train")
            raise HalbenchError(f"training failed ({type(e).__name__}: {e}); report: {path}") from e
        click.echo(f"checkpoint: {checkpoint}")
        click.echo(f"report: {_reports().write_report([], out / 'report.html', training_dir=out / 'train')}")


@click.command("train-and-eval")
@config_option
@model_options
@train_options
@eval_options
@click.option("--output-dir", type=click.Path(file_okay=False), required=True,
              help="OUT: base/, train/, trained/ and report.html go here.")
def train_and_eval_cmd(model_spec, device, trust_remote_code, prefix_cache, threads, method, data, data_format,
                       image_root, sets, output_dir, **ev) -> None:
    """Base eval -> train -> eval -> comparison report, in one command."""
    from halbench.judge_failures import check
    from halbench.preflight import check_text_file, check_train_dir
    from halbench.run_lock import run_lock

    out = Path(output_dir)
    ev["world"] = resolve_world_option(ev.get("world"))
    if ev.get("world") and not model_spec:
        model_spec = str(Path(ev["world"]) / "vlm")  # train the world's VLM, not the shipped one
    m = registry.load("method", method)
    cfg = make_method_config(m, method_values(model_spec, out, ev["seed"], data, sets, device, data_format, image_root))
    max_rate = ev.pop("max_judge_failure_rate", None)  # gated once at the end, after everything is written
    common = dict(ev, device=device, trust_remote_code=trust_remote_code, prefix_cache=prefix_cache, threads=threads,
                  overwrite=False, report=False, max_judge_failure_rate=None)
    with run_lock(out, enabled=dist_info().is_main):
        check_train_dir(cfg, m.name)  # another run's finished training here: refuse before the base eval
        check_text_file(data, "preference data")
        _check_starting_model(model_spec)
        base = run_eval(model_spec=model_spec, output_dir=str(out / "base"), **common)
        try:
            checkpoint = Path(m.train(cfg))
        except Exception as e:  # noqa: BLE001 - the report must say what failed, whatever it was
            _record_failure(out / "train", e)
            path = _reports().write_report([base], _failure_report_path(out), training_dir=out / "train")
            raise HalbenchError(f"training failed ({type(e).__name__}: {e}); report with base results: {path}") from e
        if not common.get("world") and not model_spec:  # trained from the embedded model: inherits the base's data
            common["world"] = "default"  # (a task given a data root still reads that root; see tasks/world_source.py)
        trained = run_eval(model_spec=str(checkpoint), output_dir=str(out / "trained"), **common)
        path = _reports().write_report([base, trained], out / "report.html", training_dir=out / "train",
                                       comparison_json=out / "comparison.json")
        click.echo(f"report: {path}")
        click.echo(f"comparison: {out / 'comparison.json'}")
    for run_dir in (base, trained):
        check(json.loads((run_dir / "results.json").read_text()), max_rate, f" in {run_dir}")


def _check_starting_model(model_spec: str | None) -> None:
    """A LoRA adapter / original-LLaVA --model is merged / converted now (cached), so a bad one (or a stray
    --base-model) is refused before anything is written, with the same message eval gives."""
    if model_spec and not model_spec.startswith("openai:"):
        from halbench.models.lora import prepare_checkpoint

        prepare_checkpoint(model_spec[3:] if model_spec.startswith("hf:") else model_spec)


def _failure_report_path(out: Path) -> Path:
    """report.html, unless it is the good report of an earlier complete run: never replace that."""
    status = out / "train" / "status.json"
    try:
        finished = json.loads(status.read_text()).get("status") == "ok"
    except (OSError, ValueError):
        finished = False
    good = (out / "report.html").is_file() and ((out / "trained" / "results.json").is_file() or finished)
    return out / "report-failed.html" if good else out / "report.html"


def _record_failure(train_dir: Path, error: BaseException) -> None:
    status_path = train_dir / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    if status.get("status") not in ("failed", "ok"):  # "ok": a finished run that this failure did not touch
        status = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc(limit=20), "checkpoint": None}
        atomic_write_json(status_path, status)
