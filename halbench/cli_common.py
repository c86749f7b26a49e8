"""What the commands share: option declarations, config-file defaults, and the eval run itself.

`halbench.cli` (the group) and `halbench.cli_train` (train, train-and-eval) both import from here, so the
commands depend in one direction: cli -> cli_train -> cli_common.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path
from typing import Any

import click
import yaml

from halbench import registry
from halbench.errors import HalbenchError, NotAvailableError


# -- shared option plumbing ---------------------------------------------------------------------------
def _load_config_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Eager callback: YAML keys (option names, '-' or '_') become click defaults for this command."""
    if not value:
        return value
    path = Path(value)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise click.BadParameter(f"{where}: malformed YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of option names to values")
    known = {p.name for p in ctx.command.params}
    defaults = {}
    for key, val in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise click.BadParameter(f"{path}: unknown option {key!r} for `halbench {ctx.command.name}`")
        if isinstance(val, list) and name == "tasks":
            val = ",".join(map(str, val))
        if isinstance(val, dict) and name == "task_option":
            val = [f"{t}.{k}={v}" for t, opts in val.items() for k, v in opts.items()]
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
    callback=_load_config_file, help="YAML file of option values (defaults < file < flags).",
)


def _split_tasks(value: str) -> list[str]:
    specs = [t.strip() for t in value.split(",") if t.strip()]
    if not specs:
        raise click.BadParameter("give at least one task, e.g. --tasks pope,chair")
    return specs


def _parse_task_options(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """('pope.data=f.json', 'chair.gt=g.json') -> {'pope': {'data': 'f.json'}, 'chair': {...}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        m = re.fullmatch(r"([\w-]+)\.([\w-]+)=(.*)", item)
        if not m:
            raise click.BadParameter(f"{item!r}: expected TASK.KEY=VALUE", param_hint="--task-option")
        task, key, val = m.groups()
        out.setdefault(task, {})[key.replace("-", "_")] = yaml.safe_load(val) if val else val
    return out


class HalbenchGroup(click.Group):
    """Turns HalbenchError into one clear message and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HalbenchError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            ctx.exit(e.exit_code)


# -- eval ---------------------------------------------------------------------------------------------
def _set_base_model(ctx, param, value):
    from halbench.models.lora import set_cli_base_model

    if value and ctx.info_name in ("train", "train-and-eval"):  # training loads --model directly, not via load_model
        raise click.UsageError("--base-model: training starts from a full checkpoint; merge the adapter first with "
                               "`halbench convert ADAPTER OUT --base-model DIR` and train OUT")
    set_cli_base_model(value)
    ctx.call_on_close(lambda: set_cli_base_model(None))  # scoped to this command (in-process callers, tests)
    return value


def model_options(f):
    f = click.option("--trust-remote-code", is_flag=True, help="Allow custom model code from the checkpoint.")(f)
    f = click.option("--prefix-cache", is_flag=True,
                     help="HF LLaVA models: reuse image features and the image prefix's KV cache across "
                          "greedy questions on the same image (exact; faster POPE).")(f)
    f = click.option("--threads", type=click.IntRange(0), default=None,
                     help="torch CPU threads (default on CPU: 1 - tiny models gain nothing from more, and on a "
                          "busy machine extra OpenMP threads spin; 0 = torch's default).")(f)
    f = click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, mps.")(f)
    f = click.option("--base-model", type=click.Path(exists=True, file_okay=False), default=None, expose_value=False,
                     callback=_set_base_model, help="Base checkpoint dir for a LoRA adapter --model (default: "
                     "adapter_config.json's base_model_name_or_path).")(f)
    f = click.option("--model", "model_spec", default=None,
                     help="Local HF dir (also a LoRA adapter or an original-LLaVA dir), hf:DIR, or openai:MODEL@URL. "
                          "Default: the embedded world's VLM.")(f)
    return f


def eval_options(f):
    for opt in reversed([
        click.option("--tasks", default="pope,chair", show_default=True, help="Comma-separated TASK[:VARIANT]."),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Requests per model batch."),
        click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N samples of each task."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and data order."),
        click.option("--task-option", multiple=True, metavar="TASK.KEY=VALUE",
                     help="A task option, e.g. pope.data=coco_pope_random.json (repeatable)."),
        click.option("--world", type=click.Path(exists=True, file_okay=False), default=None,
                     help="A world built by `halbench world build` to use instead of the shipped one "
                          "(task data; also the default --model, DIR/vlm)."),
        click.option("--judge", default=None, help="Judge for judged tasks: rule, hf:DIR, openai:MODEL@URL."),
        click.option("--max-judge-calls", type=click.IntRange(0), default=None, help="Cap on judge API calls."),
    ]):
        f = opt(f)
    return f


def _default_output_dir(model_spec: str | None, tasks: list[str], prefix: str = "runs") -> Path:
    name = "default-world" if not model_spec else re.sub(r"[^\w.-]+", "_", model_spec.strip("/"))[-60:]
    return Path(prefix) / name / "_".join(t.replace(":", "-") for t in tasks)


def run_eval(model_spec: str | None, tasks: str, batch_size: int, limit: int | None, seed: int,
             task_option: tuple[str, ...], judge: str | None, max_judge_calls: int | None, world: str | None,
             output_dir: str | None, overwrite: bool, report: bool, device: str,
             trust_remote_code: bool, prefix_cache: bool = False, threads: int | None = None,
             model: Any = None) -> Path:
    from halbench.evaluator import evaluate
    from halbench.models import load_model

    set_threads(threads, device)
    specs = _split_tasks(tasks)
    options = _parse_task_options(task_option)
    unknown = set(options) - {registry.parse_task_spec(s)[0] for s in specs}
    if unknown:
        raise HalbenchError(f"--task-option given for task(s) not in --tasks: {', '.join(sorted(unknown))}")
    judge_opts = {k: v for k, v in {"judge": judge, "max_judge_calls": max_judge_calls}.items() if v is not None}
    task_objs = []
    for spec in specs:
        name = registry.parse_task_spec(spec)[0]
        opts = {**options.get(name, {})}
        if world:
            opts.setdefault("world", world)
        if judge_opts and getattr(registry.load("task", name), "uses_judge", False):
            opts.update(judge_opts)
        task_objs.append(registry.make_task(spec, opts))
    if world and not model_spec and model is None:
        model_spec = str(Path(world) / "vlm")
    out = Path(output_dir) if output_dir else _default_output_dir(model_spec, specs)
    if overwrite and out.exists():
        shutil.rmtree(out)
    from halbench.distributed import device_for_rank, dist_info

    model = model or load_model(model_spec, device=device_for_rank(device, dist_info()), batch_size=batch_size,
                                trust_remote_code=trust_remote_code,
                                **({"prefix_cache": True} if prefix_cache else {}))
    config = {"command": "eval", "model": model_spec or "default-world", "tasks": specs,
              "task_options": options, "batch_size": batch_size, "limit": limit, "seed": seed,
              "device": device, "world": world, "judge": judge, "max_judge_calls": max_judge_calls}
    evaluate(model, task_objs, out, batch_size=batch_size, limit=limit, seed=seed, config=config)
    if report and dist_info().is_main:
        path = _reports().write_report([out], out / "report.html")
        click.echo(f"report: {path}")
    return out


def set_threads(threads: int | None, device: str) -> None:
    import torch

    if threads is None and device == "cpu":
        threads = 1
    if threads:
        torch.set_num_threads(threads)


def _reports():
    """The report builder, found by name so the core does not depend on the reports package's layout."""
    try:
        return importlib.import_module("halbench.reports")
    except ImportError as e:
        raise NotAvailableError(f"the report module is not available in this install ({e})") from e
