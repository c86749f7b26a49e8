"""What the commands share: option declarations, config-file defaults, and the eval run itself.

`halbench.cli` (the group) and `halbench.cli_train` (train, train-and-eval) both import from here, so the
commands depend in one direction: cli -> cli_train -> cli_common.
"""

from __future__ import annotations

import importlib
import re
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
        defaults[name] = _checked_value(ctx, path, key, name, val)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _checked_value(ctx: click.Context, path: Path, key: str, name: str, val: Any) -> Any:
    """A config-file value converted by its option's click type now, so `batch_size: [1, 2]` is one clear
    error naming the file and key instead of a TypeError later."""
    param = next(p for p in ctx.command.params if p.name == name)
    multiple = getattr(param, "multiple", False) or param.nargs != 1
    if isinstance(val, dict) or (isinstance(val, list) and not multiple):
        raise click.BadParameter(f"{path}: {key} expects a single value, got {type(val).__name__} {val!r}")
    if val is None or multiple:
        return val
    try:
        param.type.convert(val, param, ctx)
    except click.BadParameter as e:
        raise click.BadParameter(f"{path}: {key}: {e.message}") from e
    return val


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
            from halbench.redact import redact_text

            click.secho(f"error: {redact_text(str(e))}", fg="red", err=True)  # a URL's token never reaches a log
            ctx.exit(e.exit_code)


# -- eval ---------------------------------------------------------------------------------------------
def _set_base_model(ctx, param, value):
    from halbench.models.lora import set_cli_base_model

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
        click.option("--world", default=None, metavar="DIR|default",
                     help="Score on an embedded world on purpose: 'default' (the shipped one) or a world built by "
                          "`halbench world build` (task data; also the default --model, DIR/vlm)."),
        click.option("--coco-root", default=None, metavar="DIR",
                     help="COCO 2014 folder (val2014/, annotations/instances_val2014.json, captions_val2014.json): "
                          "real data for pope, chair, object_halbench [env HALBENCH_COCO_ROOT]."),
        click.option("--mmhal-root", default=None, metavar="DIR",
                     help="MMHal-Bench folder (images/, response_template.json) [env HALBENCH_MMHAL_ROOT]."),
        click.option("--hf-datasets", is_flag=True,
                     help="Read the published Hugging Face copies where one exists (pope: lmms-lab/POPE)."),
        click.option("--protocol", default=None,
                     help="A published evaluation protocol: llava-1.5, opera, rlaif-v, mmhal-v (`halbench tasks`)."),
        click.option("--judge", default=None, help="Judge for judged tasks: rule, hf:DIR, openai:MODEL@URL."),
        click.option("--max-judge-calls", type=click.IntRange(0), default=None, help="Cap on judge API calls."),
        *_safety_options(),
    ]):
        f = opt(f)
    return f


def _safety_options() -> list:
    from halbench.eval_guard import safety_options

    return safety_options()


def _default_output_dir(model_spec: str | None, tasks: list[str], prefix: str = "runs") -> Path:
    from halbench.redact import redact_text

    name = "default-world" if not model_spec else re.sub(r"[^\w.-]+", "_", redact_text(model_spec).strip("/"))[-60:]
    return Path(prefix) / name / "_".join(t.replace(":", "-") for t in tasks)


def run_eval(model_spec: str | None, tasks: str, batch_size: int, limit: int | None, seed: int,
             task_option: tuple[str, ...], judge: str | None, max_judge_calls: int | None, world: str | None,
             output_dir: str | None, overwrite: bool, report: bool, device: str,
             trust_remote_code: bool, prefix_cache: bool = False, threads: int | None = None,
             model: Any = None, coco_root: str | None = None, mmhal_root: str | None = None,
             hf_datasets: bool = False, protocol: str | None = None, **safety: Any) -> Path:
    """`safety`: the options of halbench.eval_guard.safety_options() (key policy, caps, failure gate)."""
    from halbench import eval_guard, preflight
    from halbench.evaluator import evaluate
    from halbench.models import load_model

    safety = {**eval_guard.SAFETY_DEFAULTS, **safety}
    set_threads(threads, device)
    sources = _tasks_module("world_source")
    world = resolve_world_option(world)
    specs = _split_tasks(tasks)
    options = _parse_task_options(task_option)
    unknown = set(options) - {registry.parse_task_spec(s)[0] for s in specs}
    if unknown:
        raise HalbenchError(f"--task-option given for task(s) not in --tasks: {', '.join(sorted(unknown))}")
    per_task = _tasks_module("eval_sources").task_options(
        [registry.parse_task_spec(s)[0] for s in specs], options, coco_root=coco_root, mmhal_root=mmhal_root,
        hf_datasets=hf_datasets, protocol=protocol)
    judge_opts = {k: v for k, v in {"judge": judge, "max_judge_calls": max_judge_calls}.items() if v is not None}
    judge_opts.update(eval_guard.judge_task_options(safety))
    task_objs = []
    for spec in specs:
        name = registry.parse_task_spec(spec)[0]
        cls = registry.load("task", name)
        preflight.check_task_options(name, cls, options.get(name, {}))
        opts = {**per_task[name]}
        if world:
            opts.setdefault("world", world)
        if judge_opts and getattr(cls, "uses_judge", False):
            opts.update(judge_opts)
        task_objs.append(registry.make_task(spec, opts))
    # never the toy world by accident: refuse before any model is loaded or anything written
    sources.check_data_sources(task_objs, model_spec, world_asked=bool(world))
    if world and not model_spec and model is None and not sources.is_embedded_model(str(Path(world) / "vlm")):
        model_spec = str(Path(world) / "vlm")
    out = Path(output_dir) if output_dir else _default_output_dir(model_spec, specs)
    from halbench.distributed import device_for_rank, dist_info

    config = {"command": "eval", "model": model_spec or "default-world", "tasks": specs,
              "task_options": options, "batch_size": batch_size, "limit": limit, "seed": seed,
              "device": device, "world": world, "judge": judge, "max_judge_calls": max_judge_calls}
    roots = _tasks_module("eval_sources").roots_from(coco_root, mmhal_root)  # flag/config, else env var
    config.update({k: v for k, v in {"coco_root": roots.get("coco"), "mmhal_root": roots.get("mmhal"),
                                     "hf_datasets": hf_datasets, "protocol": protocol}.items() if v})  # only when set
    if safety["max_stored_chars"] != eval_guard.DEFAULT_MAX_STORED_CHARS:  # changes what records hold
        config["max_stored_chars"] = safety["max_stored_chars"]
    main = dist_info().is_main
    guarded = not world and not sources.is_embedded_model(model_spec)
    # the world guard wraps the preflight too: it enumerates samples (and decodes images) before the model loads
    with sources.world_guard(guarded, model_spec, [t.name for t in task_objs]), \
            eval_guard.guarded_run(out, config, task_objs, model_spec, model, limit, overwrite, safety, main) as guard:
        model = model or load_model(model_spec, device=device_for_rank(device, dist_info()), batch_size=batch_size,
                                    trust_remote_code=trust_remote_code,
                                    **({"prefix_cache": True} if prefix_cache else {}), **guard.model_kw(model_spec))
        guard.check_model(model, task_objs)
        results = evaluate(model, task_objs, out, batch_size=batch_size, limit=limit, seed=seed, config=config,
                           samples=guard.samples, max_stored_chars=guard.max_stored_chars)
        if report and main:
            path = _reports().write_report([out], out / "report.html")
            click.echo(f"report: {path}")
    if main:
        guard.gate(results)
    return out


def set_threads(threads: int | None, device: str) -> None:
    import torch

    if threads is None and device == "cpu":
        threads = 1
    if threads:
        torch.set_num_threads(threads)


def resolve_world_option(value: str | None) -> str | None:
    """--world 'default' -> the shipped world's folder; a folder is checked; None stays None."""
    return _tasks_module("world_source").resolve_world(value)


def _tasks_module(name: str):
    """A module of the task package, found by name (the core does not import halbench.tasks by path)."""
    try:
        return importlib.import_module(f"halbench.tasks.{name}")
    except ImportError as e:
        raise NotAvailableError(f"halbench.tasks.{name} is not available in this install ({e})") from e


def _reports():
    """The report builder, found by name so the core does not depend on the reports package's layout."""
    try:
        return importlib.import_module("halbench.reports")
    except ImportError as e:
        raise NotAvailableError(f"the report module is not available in this install ({e})") from e
