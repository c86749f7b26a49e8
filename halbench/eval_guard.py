"""What `halbench eval` does around the evaluator so that a run never loses or leaks anything (issue 14).

`safety_options()` declares the CLI options; `guarded_run(...)` is the context `run_eval` evaluates in:

    with guarded_run(out, config, task_objs, ...) as guard:   # lock + every check, nothing written yet
        model = load_model(..., **guard.model_kw)
        guard.check_model(model)                              # one 1-token generation (HF backends)
        results = evaluate(..., samples=guard.samples, max_stored_chars=guard.max_stored_chars)
    guard.gate(results)                                       # judge failures: exit 3 after writing

The order is the point: the output dir's lock (halbench.run_lock), endpoint URLs and key policy, the
checkpoint's files, an existing run's configuration, and every sample's image are checked before the model
loads or a byte is written (halbench.preflight); --overwrite empties the dir only after all of that passed.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import click

from halbench import preflight
from halbench.judge_failures import DEFAULT_MAX_RATE, check
from halbench.stored_text import DEFAULT_MAX_STORED_CHARS

#: run_eval keyword arguments added by safety_options(), with their defaults
SAFETY_DEFAULTS: dict[str, Any] = {"max_judge_failure_rate": DEFAULT_MAX_RATE,
                                   "max_stored_chars": DEFAULT_MAX_STORED_CHARS, "skip_bad_images": False,
                                   "model_api_key_env": None, "judge_api_key_env": None,
                                   "allow_insecure_http": False}


def safety_options() -> list:
    """Options of preflight / stored_text / judge_failures / the API-key policy (eval, train-and-eval)."""
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


def judge_task_options(safety: dict[str, Any]) -> dict[str, Any]:
    """The task options judged tasks get from --judge-api-key-env / --allow-insecure-http."""
    opts = {"judge_api_key_env": safety.get("judge_api_key_env"),
            "judge_allow_insecure_http": True if safety.get("allow_insecure_http") else None}
    return {k: v for k, v in opts.items() if v is not None}


@dataclass
class Guard:
    out: Path
    safety: dict[str, Any]
    samples: list = field(default_factory=list)

    @property
    def max_stored_chars(self) -> int:
        value = self.safety.get("max_stored_chars")
        return DEFAULT_MAX_STORED_CHARS if value is None else int(value)

    def model_kw(self, model_spec: str | None) -> dict[str, Any]:
        """load_model keywords for an openai: endpoint (the key env and the plain-http permission)."""
        if not model_spec or not str(model_spec).startswith("openai:"):
            return {}
        return {"api_key_env": self.safety.get("model_api_key_env"),
                "allow_insecure_http": bool(self.safety.get("allow_insecure_http"))}

    def check_model(self, model: Any, tasks: list) -> None:
        preflight.check_model_generates(model, tasks, self.samples)

    def gate(self, results: dict[str, Any]) -> None:
        check(results, self.safety.get("max_judge_failure_rate"), f" in {self.out}")


@contextlib.contextmanager
def guarded_run(out: Path, config: dict[str, Any], tasks: list, model_spec: str | None, model: Any,
                limit: int | None, overwrite: bool, safety: dict[str, Any], main: bool = True) -> Iterator[Guard]:
    """Lock OUT and run every check (see module docstring); yields a Guard holding the checked samples."""
    from halbench.evaluator import task_samples
    from halbench.run_lock import run_lock

    allow = bool(safety.get("allow_insecure_http"))
    for t in tasks:
        if getattr(t, "uses_judge", False):
            preflight.check_endpoint(t.options.get("judge"), t.options.get("judge_api_key_env"), allow, "judge")
    if model is None:
        preflight.check_endpoint(model_spec, safety.get("model_api_key_env"), allow, "model")
    with run_lock(out, enabled=main):
        if not overwrite:
            preflight.check_run_dir(out, config)
        if model is None:
            preflight.check_checkpoint(model_spec or _world_vlm())
        guard = Guard(out, safety)
        guard.samples = [task_samples(t, limit, skip_bad_images=bool(safety.get("skip_bad_images"))) for t in tasks]
        if overwrite and main:
            _clear_run_dir(out)
        yield guard


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
