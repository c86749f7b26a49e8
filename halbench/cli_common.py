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
            click.secho(f"error: {e}", fg="red", err=True)
            ctx.exit(e.exit_code)


# -- eval ---------------------------------------------------------------------------------------------
def model_options(f):
    f = click.option("--trust-remote-code", is_flag=True, help="Allow custom model code from the checkpoint.")(f)
    f = click.option("--prefix-cache", is_flag=True,
                     help="HF LLaVA models: reuse image features and the image prefix's KV cache across "
                          "greedy questions on the same image (exact; faster POPE).")(f)
    f = click.option("--threads", type=click.IntRange(0), default=None,
                     help="torch CPU threads (default on CPU: 1 - tiny models gain nothing from more, and on a "
                          "busy machine extra OpenMP threads spin; 0 = torch's default).")(f)
    f = click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, mps.")(f)
    f = click.option("--model", "model_spec", default=None,
                     help="Local HF dir, hf:DIR, or openai:MODEL@URL. Default: the embedded world's VLM.")(f)
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
        *safety_options(),
    ]):
        f = opt(f)
    return f


def safety_options() -> list:
    """Options of halbench.preflight / stored_text / judge_failures / the API-key policy (eval + train-and-eval)."""
    from halbench.judge_failures import DEFAULT_MAX_RATE
    from halbench.stored_text import DEFAULT_MAX_STORED_CHARS

    return [
        click.option("--max-judge-failure-rate", type=click.FloatRange(0, 1), default=DEFAULT_MAX_RATE,
                     show_default=True, help="Exit non-zero (code 3, after writing everything) when a task's share "
                                             "of failed judge verdicts is above this."),
        click.option("--max-stored-chars", type=click.IntRange(0), default=DEFAULT_MAX_STORED_CHARS,
                     show_default=True, help="Store at most this many characters of each answer / judge reply "
                                             "(cut records say truncated: true and the original length; 0 = no cap)."),
        click.option("--skip-bad-images", is_flag=True, help="Run without images that fail to decode (counted in "
                                                             "results and report) instead of refusing."),
        click.option("--model-api-key-env", default=None, metavar="NAME",
                     help="Env var whose key is sent to an openai: --model endpoint (default: OPENAI_API_KEY, and "
                          "only to https://api.openai.com; '' = none)."),
        click.option("--judge-api-key-env", default=None, metavar="NAME",
                     help="Env var whose key is sent to an openai: --judge endpoint (default as --model-api-key-env)."),
        click.option("--allow-insecure-http", is_flag=True,
                     help="Allow sending an API key over plain http to a host that is not this machine."),
    ]


def _default_output_dir(model_spec: str | None, tasks: list[str], prefix: str = "runs") -> Path:
    name = "default-world" if not model_spec else re.sub(r"[^\w.-]+", "_", model_spec.strip("/"))[-60:]
    return Path(prefix) / name / "_".join(t.replace(":", "-") for t in tasks)


def run_eval(model_spec: str | None, tasks: str, batch_size: int, limit: int | None, seed: int,
             task_option: tuple[str, ...], judge: str | None, max_judge_calls: int | None, world: str | None,
             output_dir: str | None, overwrite: bool, report: bool, device: str,
             trust_remote_code: bool, prefix_cache: bool = False, threads: int | None = None,
             model: Any = None, max_judge_failure_rate: float | None = None,
             max_stored_chars: int | None = None, skip_bad_images: bool = False,
             model_api_key_env: str | None = None, judge_api_key_env: str | None = None,
             allow_insecure_http: bool = False) -> Path:
    from halbench.evaluator import evaluate
    from halbench.models import load_model
    from halbench.run_lock import run_lock
    from halbench.stored_text import DEFAULT_MAX_STORED_CHARS

    set_threads(threads, device)
    max_stored_chars = DEFAULT_MAX_STORED_CHARS if max_stored_chars is None else max_stored_chars
    safety = {"model_api_key_env": model_api_key_env, "judge_api_key_env": judge_api_key_env,
              "allow_insecure_http": allow_insecure_http}
    task_objs, options, specs, model_spec = _plan_tasks(tasks, task_option, judge, max_judge_calls, world,
                                                        model_spec, model, safety)
    out = Path(output_dir) if output_dir else _default_output_dir(model_spec, specs)
    config = {"command": "eval", "model": model_spec or "default-world", "tasks": specs,
              "task_options": options, "batch_size": batch_size, "limit": limit, "seed": seed,
              "device": device, "world": world, "judge": judge, "max_judge_calls": max_judge_calls}
    if max_stored_chars != DEFAULT_MAX_STORED_CHARS:  # changes what records hold; the default keeps old configs
        config["max_stored_chars"] = max_stored_chars
    from halbench.distributed import device_for_rank, dist_info

    main = dist_info().is_main
    with run_lock(out, enabled=main):
        if not overwrite:
            _preflight().check_run_dir(out, config)
        if model is None:
            _preflight().check_checkpoint(model_spec or _world_vlm())
        samples = _preflight_samples(task_objs, limit, skip_bad_images)
        if overwrite and main:
            _clear_run_dir(out)
        model = model or load_model(model_spec, device=device_for_rank(device, dist_info()),
                                    batch_size=batch_size, trust_remote_code=trust_remote_code,
                                    **({"prefix_cache": True} if prefix_cache else {}),
                                    **_endpoint_kw(model_spec, model_api_key_env, allow_insecure_http))
        _preflight().check_model_generates(model, task_objs, samples)
        results = evaluate(model, task_objs, out, batch_size=batch_size, limit=limit, seed=seed, config=config,
                           max_stored_chars=max_stored_chars, samples=samples)
        if report and main:
            path = _reports().write_report([out], out / "report.html")
            click.echo(f"report: {path}")
    if main:
        from halbench.judge_failures import check

        check(results, max_judge_failure_rate, f" in {out}")
    return out


def _preflight():
    from halbench import preflight

    return preflight


def _clear_run_dir(out: Path) -> None:
    """--overwrite: empty the run directory, keeping the lock this process holds in it."""
    from halbench.run_lock import LOCK_NAME

    for child in out.iterdir() if out.is_dir() else []:
        if child.name != LOCK_NAME:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _world_vlm() -> str | None:
    """The dir load_model(None) would use (None when the world is not available: load_model says why)."""
    try:
        from halbench.world import default_world

        return str(default_world().vlm_dir)
    except Exception:  # noqa: BLE001
        return None


def _endpoint_kw(model_spec: str | None, key_env: str | None, allow_insecure_http: bool) -> dict[str, Any]:
    if not model_spec or not str(model_spec).startswith("openai:"):
        return {}
    return {"api_key_env": key_env, "allow_insecure_http": allow_insecure_http}


def _plan_tasks(tasks: str, task_option: tuple[str, ...], judge: str | None, max_judge_calls: int | None,
                world: str | None, model_spec: str | None, model: Any, safety: dict[str, Any]):
    """Task objects from the flags, every option and endpoint checked (halbench.preflight); nothing written."""
    pf = _preflight()
    specs = _split_tasks(tasks)
    options = _parse_task_options(task_option)
    unknown = set(options) - {registry.parse_task_spec(s)[0] for s in specs}
    if unknown:
        raise HalbenchError(f"--task-option given for task(s) not in --tasks: {', '.join(sorted(unknown))}")
    judge_opts = {k: v for k, v in {"judge": judge, "max_judge_calls": max_judge_calls,
                                    "judge_api_key_env": safety["judge_api_key_env"],
                                    "judge_allow_insecure_http": safety["allow_insecure_http"] or None}.items()
                  if v is not None}
    task_objs = []
    for spec in specs:
        name = registry.parse_task_spec(spec)[0]
        cls = registry.load("task", name)
        pf.check_task_options(name, cls, options.get(name, {}))
        opts = {**options.get(name, {})}
        if world:
            opts.setdefault("world", world)
        if getattr(cls, "uses_judge", False):
            opts.update(judge_opts)
            pf.check_endpoint(opts.get("judge"), opts.get("judge_api_key_env"), safety["allow_insecure_http"], "judge")
        task_objs.append(registry.make_task(spec, opts))
    if world and not model_spec and model is None:
        model_spec = str(Path(world) / "vlm")
    if model is None:
        pf.check_endpoint(model_spec, safety["model_api_key_env"], safety["allow_insecure_http"], "model")
    return task_objs, options, specs, model_spec


def _preflight_samples(task_objs: list, limit: int | None, skip_bad_images: bool) -> list:
    """Every task's samples checked (ids, images decoded once) before the model loads."""
    from halbench.evaluator import task_samples

    return [task_samples(t, limit, skip_bad_images=skip_bad_images) for t in task_objs]


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
