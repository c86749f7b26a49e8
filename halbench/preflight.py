"""Every check an eval can make before it writes anything or loads a model.

`halbench eval` and `train-and-eval` call these first, so bad input costs nothing and destroys nothing:

- task options: unknown keys (`pope.bogus=1`) are refused with the list of valid keys; numeric options must
  parse (`pope.max_new_tokens=abc`);
- endpoints: user:password@ in a URL is refused; a key is never sent over plain http to a non-loopback host
  unless --allow-insecure-http (halbench.models.openai.check_key_transport);
- the checkpoint: every *.safetensors file is as long as its header says (a truncated download is named);
- the run directory: an existing config.yaml for another configuration is refused here, before the model
  loads (the evaluator checks again when it claims the directory);
- samples: at least one per task; every image exists, stays inside its root, and decodes (once, cheaply,
  halbench.images.check_image); bad images are listed together, or skipped and counted with
  --skip-bad-images;
- training: a train dir holding another finished or checkpointed run is refused before the base eval
  (halbench.training.loop.check_train_dir).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from halbench.errors import DataError, HalbenchError, ModelLoadError

#: option keys each built-in task reads (tests/test_bad_input.py checks this against the task sources);
#: a third-party task may declare its own in a class attribute `option_names`.
KNOWN_OPTIONS: dict[str, frozenset[str]] = {
    "pope": frozenset({"coco_root", "data", "hf_config", "hf_revision", "hf_split", "image_root", "max_new_tokens", "prompt_suffix",
                       "splits", "version", "world"}),
    "chair": frozenset({"coco_annotations", "coco_root", "gt", "image_list", "image_root", "n_images", "protocol",
                        "synonyms", "world"}),
    "object_halbench": frozenset({"coco", "coco_root", "data", "gt", "max_new_tokens", "n", "seed", "synonyms", "world"}),
    "mmhal": frozenset({"data", "hf_config", "hf_revision", "hf_split", "images", "judge_prompt", "max_new_tokens", "mmhal_root", "n",
                        "prompt_suffix", "seed", "world"}),
    "reward_analysis": frozenset({"baseline_run", "captions", "clip", "device", "gt", "images", "max_new_tokens",
                                  "n_boot", "n_images", "phrase_template", "pipeline", "prompt", "seed",
                                  "synonyms", "world"}),
}
INT_OPTIONS = frozenset({"max_new_tokens", "n", "n_images", "seed", "n_boot", "max_judge_calls",
                         "judge_concurrency", "judge_max_retries"})
FLOAT_OPTIONS = frozenset({"judge_timeout", "judge_backoff"})


# -- task options ---------------------------------------------------------------------------------------------
def valid_option_names(name: str, cls: type) -> frozenset[str] | None:
    """The option keys task `name` accepts (None: unknown task class that declares nothing; not checked)."""
    names = getattr(cls, "option_names", None) or KNOWN_OPTIONS.get(name)
    if names is None:
        return None
    if getattr(cls, "uses_judge", False):
        from halbench.judges import JUDGE_OPTIONS

        names = frozenset(names) | frozenset(JUDGE_OPTIONS)
    return frozenset(names)


def check_task_options(name: str, cls: type, options: dict[str, Any]) -> None:
    """Unknown keys and unparseable numbers in one task's --task-option values -> HalbenchError."""
    valid = valid_option_names(name, cls)
    if valid is not None:
        unknown = sorted(set(options) - valid)
        if unknown:
            raise HalbenchError(f"unknown --task-option key(s) for {name}: {', '.join(unknown)}; "
                                f"valid keys: {', '.join(sorted(valid))}")
    for key, value in options.items():
        kind = int if key in INT_OPTIONS else float if key in FLOAT_OPTIONS else None
        if kind is None or value is None:
            continue
        try:
            ok = not isinstance(value, bool) and kind(value) == kind(value)
            if kind is int and float(value) != int(value):
                ok = False
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise HalbenchError(f"--task-option {name}.{key}={value!r}: expected {'an integer' if kind is int else 'a number'}")


# -- endpoints ------------------------------------------------------------------------------------------------
def check_endpoint(spec: str | None, key_env: str | None, allow_insecure_http: bool, what: str) -> None:
    """For an `openai:MODEL@URL` spec: no userinfo, and no key in clear to a remote host."""
    if not spec or not str(spec).startswith("openai:"):
        return
    from halbench.models.openai import check_key_transport, key_env_for, split_spec
    from halbench.redact import check_no_userinfo

    _model, url = split_spec(str(spec))
    hint = "--judge-api-key-env NAME" if what == "judge" else "--model-api-key-env NAME"
    check_no_userinfo(url, f"{what} URL", hint)
    check_key_transport(url, key_env_for(url, key_env), allow_insecure_http)


# -- checkpoint -----------------------------------------------------------------------------------------------
def check_checkpoint(path: str | Path | None) -> None:
    """Each *.safetensors in a local checkpoint dir holds as many bytes as its header declares."""
    if path is None:
        return
    d = Path(str(path).removeprefix("hf:"))
    if not d.is_dir():
        return  # the loader names a missing dir
    for f in sorted(d.glob("*.safetensors")):
        _check_safetensors(f)


def _check_safetensors(f: Path) -> None:
    size = f.stat().st_size
    try:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ModelLoadError(f"{f}: truncated or not a safetensors file (header says {n} bytes, the "
                                     f"file has {size})")
            header = json.loads(fh.read(n))
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{f}: not a readable safetensors file ({type(e).__name__})") from e
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise ModelLoadError(f"{f}: truncated ({size} bytes, its header needs {need}); re-copy or rebuild the "
                             "checkpoint")


def check_model_generates(model: Any, tasks: list, samples: list[list[dict[str, Any]]]) -> None:
    """One 1-token generation on the first sample, before anything is written: a checkpoint whose config.json
    names another architecture than its weights loads with fresh weights and fails only inside generate."""
    import dataclasses

    if getattr(model, "backend", None) != "hf":
        return  # HTTP backends: a call costs money; their failures are per-request errors anyway
    first = next(((t, s[0]) for t, s in zip(tasks, samples) if s and "generate" in t.required_capabilities), None)
    if first is None:
        return
    req = first[0].request(first[1])
    req = dataclasses.replace(req, generation=dataclasses.replace(req.generation, max_new_tokens=1))
    try:
        model.generate([req])
    except HalbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - any crash here means the checkpoint is not usable as loaded
        raise ModelLoadError(f"{model.model_id}: the checkpoint loads but cannot generate ({type(e).__name__}: "
                             f"{e}); does its config.json name the architecture its weights were saved from?") from e


def check_text_file(path: str | Path | None, what: str = "data file") -> None:
    """A local JSON/JSONL file is readable UTF-8 (named by file and line) before a command starts work."""
    if path is None or not Path(str(path)).is_file():
        return
    if Path(str(path)).suffix.lower() not in (".json", ".jsonl", ".txt", ".yaml", ".yml"):
        return  # parquet / arrow preference data are binary: their loaders name bad files themselves
    from halbench.textio import read_text

    read_text(path, what)


# -- run directory --------------------------------------------------------------------------------------------
def check_run_dir(out: Path, config: dict[str, Any]) -> None:
    """An existing config.yaml for another configuration -> HalbenchError (same rule as the evaluator)."""
    from halbench.redact import redact
    from halbench.runs import RunDir

    try:
        existing = RunDir(out).read_config()
    except Exception as e:  # noqa: BLE001 - an unreadable config.yaml is not ours to resume
        raise DataError(f"cannot read the existing run configuration ({e})", path=Path(out) / "config.yaml") from e
    config = redact(config)
    if existing is not None and existing != config:
        diff = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
        raise HalbenchError(f"{out} holds a run with a different configuration; use another --output-dir or "
                            f"--overwrite (differs in: {diff})")


# -- samples and images ---------------------------------------------------------------------------------------
def check_samples(task: Any, samples: list[dict[str, Any]], skip_bad_images: bool = False
                  ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(usable samples, [{id, image, reason}] of skipped ones); bad images refuse the run unless skipped."""
    from halbench.images import check_image

    if not samples:
        files = ", ".join(str(p) for p in _safe_data_files(task)) or "its data"
        raise DataError(f"task {task.name!r} has no samples (check {files})")
    bad: list[dict[str, str]] = []
    for s in samples:
        image = task.request(s).image
        if image is None:
            continue
        reason = check_image(image)
        if reason:
            bad.append({"id": str(s["id"]), "image": str(image), "reason": reason})
    if bad and not skip_bad_images:
        files = {b["image"]: b["reason"] for b in bad}
        listing = "; ".join(f"{f}: {why}" for f, why in list(files.items())[:20])
        more = f" (and {len(files) - 20} more)" if len(files) > 20 else ""
        raise DataError(f"{len(files)} unusable image file(s) ({len(bad)} sample(s) of task {task.name!r}): "
                        f"{listing}{more}; fix or remove them, or pass --skip-bad-images to run without them "
                        "(they are counted in the results and report)")
    skipped = {b["id"] for b in bad}
    kept = [s for s in samples if str(s["id"]) not in skipped]
    if not kept:
        raise DataError(f"task {task.name!r}: every image is unusable (e.g. {bad[0]['image']}: {bad[0]['reason']})")
    return kept, bad


def _safe_data_files(task: Any) -> list[Path]:
    try:
        return list(task.data_files())
    except Exception:  # noqa: BLE001 - only used to word an error message
        return []


# -- training -------------------------------------------------------------------------------------------------
def check_train_dir(cfg: Any, method: str) -> None:
    """Refuse a train dir that holds another finished or checkpointed run (before the base eval)."""
    import importlib

    try:  # the core finds training by name (no import of the training package at module level)
        loop = importlib.import_module("halbench.training.loop")
    except ImportError:
        return
    loop.check_train_dir(cfg, method)
