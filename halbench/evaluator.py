"""The evaluator: tasks -> requests -> model batches -> scored records -> metrics.

Crash-safety: each record is appended to samples/<task>.jsonl as soon as it is scored (written through to the
OS at once; fsync'd at the end of a batch once >= 1 s has passed since the last: `RecordWriter`); a re-run
with the same configuration skips the samples already recorded (a torn last line from a SIGKILL is dropped),
retries the ones that errored, and ends with the same metrics as an uninterrupted run. results.json and the
compacted samples file are written atomically at the end, so a reader never sees half a result.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from halbench.distributed import Dist, barrier, dist_info
from halbench.errors import DataError, HalbenchError
from halbench.fingerprint import environment
from halbench.models.base import Model
from halbench.runs import (RecordWriter, RunDir, atomic_write_json, atomic_write_text, file_sha256, read_records,
                           strict_json)
from halbench.run_lock import run_lock
from halbench.schema import Response
from halbench.stored_text import DEFAULT_MAX_STORED_CHARS, cap_record, response_was_cut
from halbench.task import Task


def check_capabilities(model: Model, tasks: list[Task]) -> None:
    for task in tasks:
        missing = set(task.required_capabilities) - set(model.capabilities)
        if missing:
            raise HalbenchError(
                f"model {model.model_id!r} lacks {sorted(missing)} needed by task {task.name!r} "
                f"(it has {sorted(model.capabilities)})"
            )


def task_samples(task: Task, limit: int | None, skip_bad_images: bool = False) -> list[dict[str, Any]]:
    """The task's samples (first `limit`), checked for unique ids and usable images before any request
    (halbench.preflight.check_samples: each image decoded once; bad ones refuse the run unless skipped, and
    the skipped ones are kept in `task.skipped_images` for results.json)."""
    from halbench.preflight import check_samples

    samples = task.samples()[:limit] if limit else task.samples()
    seen: set[str] = set()
    for s in samples:
        sid = str(s["id"])
        if sid in seen:
            raise DataError(f"task {task.name!r} yields sample id {sid!r} twice")
        seen.add(sid)
        image = task.request(s).image
        if image is not None and not Path(image).is_file():
            raise DataError(f"image for sample {sid!r} of task {task.name!r} not found", path=image)
    samples, task.skipped_images = check_samples(task, samples, skip_bad_images)
    return samples


def _record(sample: dict, request, response: Response, scored: dict | None,
            max_chars: int | None = DEFAULT_MAX_STORED_CHARS) -> dict[str, Any]:
    base = {"id": str(sample["id"]), "prompt": request.prompt, "image": request.image,
            "response": response.text, "error": response.error}
    return cap_record({**base, **(scored or {})}, max_chars)


def _latest_by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for r in records}  # later lines win: a retried error replaces the failed try


def _records_files(run: RunDir, task: Task) -> list[Path]:
    """The task's records: the merged file plus per-rank files left by a data-parallel run."""
    main = run.samples_path(task.name)
    return [main] + sorted(main.parent.glob(f"{task.name}.rank*.jsonl"))


def _read_all(run: RunDir, task: Task) -> dict[str, dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for p in _records_files(run, task):
        records += read_records(p, repair=True)
    return _latest_by_id(records)


def run_task(model: Model, task: Task, samples: list[dict[str, Any]], run: RunDir, batch_size: int,
             progress: bool = True, dist: Dist = Dist(),
             max_chars: int | None = DEFAULT_MAX_STORED_CHARS) -> list[dict[str, Any]] | None:
    """Generate + score every pending sample of one task (this process's share of them under a
    data-parallel launch); returns all records in sample order on the main process, None elsewhere.
    A stored record whose scoring failed is scored again from its stored answer, or regenerated when the
    stored answer was cut (--max-stored-chars), so a re-run never judges a different text."""
    path = run.samples_path(task.name)
    if dist.enabled:
        path = path.with_name(f"{task.name}.rank{dist.rank}.jsonl")
    done = {k: r for k, r in _read_all(run, task).items() if r.get("error") is None
            and not (response_was_cut(r) and task.needs_rescore(r))}
    pending = [s for s in samples if str(s["id"]) not in done][dist.rank::dist.world_size]
    rescore = [s for s in samples if str(s["id"]) in done and task.needs_rescore(done[str(s["id"])])]
    rescore = rescore[dist.rank::dist.world_size]
    barrier(dist)  # all ranks have split the same pending list before anyone writes a record
    if progress and not pending and not rescore:  # a re-run of a finished task: say so, no empty bar
        tqdm.write(f"{task.full_name}: complete, all {len(samples)} samples already recorded in {run.path}")
    bar = tqdm(total=len(pending), desc=task.full_name, disable=not progress or not pending, unit="sample")
    with RecordWriter(path) as writer:
        _rescore(task, rescore, done, writer, max_chars)
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            _generate_and_score(model, task, batch, writer, max_chars)
            writer.commit()
            bar.update(len(batch))
    bar.close()
    barrier(dist)  # every process has finished writing its records
    if not dist.is_main:
        return None
    latest = _read_all(run, task)
    return [latest[str(s["id"])] for s in samples]


def _generate_and_score(model: Model, task: Task, batch: list[dict[str, Any]], writer: RecordWriter,
                        max_chars: int | None) -> None:
    requests = [task.request(s) for s in batch]
    responses = model.generate(requests)
    if len(responses) != len(requests):
        raise RuntimeError(f"{type(model).__name__}.generate returned {len(responses)} responses "
                           f"for {len(requests)} requests")
    ok = [i for i, r in enumerate(responses) if r.ok]
    scored = dict(zip(ok, task.score_batch([batch[i] for i in ok], [responses[i] for i in ok])))
    for i, (s, req, resp) in enumerate(zip(batch, requests, responses)):
        writer.write(_record(s, req, resp, scored.get(i), max_chars))


def _rescore(task: Task, samples: list[dict], done: dict[str, dict], writer: RecordWriter,
             max_chars: int | None) -> None:
    """Score stored responses again (their scoring failed before, e.g. an unreachable judge)."""
    if not samples:
        return
    responses = [Response(text=done[str(s["id"])]["response"]) for s in samples]
    for s, resp, scored in zip(samples, responses, task.score_batch(samples, responses)):
        writer.write(_record(s, task.request(s), resp, scored, max_chars))


def _task_result(task: Task, records: list[dict], run: RunDir) -> dict[str, Any]:
    task.artifacts_dir = run.artifacts_dir(task.name)
    metrics = task.aggregate(records)
    skipped = getattr(task, "skipped_images", None) or []
    if skipped:  # --skip-bad-images: the run is over fewer samples; say so next to the metrics
        metrics["n_skipped_images"] = len(skipped)
    n_errors = sum(r.get("error") is not None for r in records)
    artifacts = {k: str(Path("artifacts") / task.name / v) for k, v in task.artifacts.items()}
    return {
        "task": task.describe(),
        "data_source": _data_source(task, len(records)),
        "metrics": metrics,
        "directions": {m.name: m.direction for m in task.metrics},
        "n_samples": len(records),
        "n_errors": n_errors,
        "fingerprints": {
            "data": {str(p): file_sha256(p) for p in task.data_files()},
            "prompts": _prompt_hash(records),
        },
        "artifacts": artifacts,
        **({"skipped_images": skipped} if skipped else {}),
    }


def _data_source(task: Task, n_run: int) -> str | None:
    """The task's data in words (its `data_source()`, if it has one), e.g. "COCO val2014 (...), POPE 3df3ba1,
    9,000 questions"; with --limit, how many ran."""
    fn = getattr(task, "data_source", None)
    if not callable(fn):
        return None
    text, total = str(fn()), len(task.samples())
    return text if n_run >= total else f"{text}; {n_run:,} of them evaluated (--limit)"


def _prompt_hash(records: list[dict]) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["id"], r["prompt"]]).encode())
    return h.hexdigest()[:16]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(model: Model, tasks: list[Task], output_dir: str | Path, *, batch_size: int = 8,
             limit: int | None = None, seed: int = 0, config: dict[str, Any] | None = None,
             progress: bool = True, max_stored_chars: int | None = DEFAULT_MAX_STORED_CHARS,
             samples: list[list[dict[str, Any]]] | None = None, skip_bad_images: bool = False) -> dict[str, Any]:
    """Run every task, write the run directory, return results.json's content. `samples` = the tasks'
    samples as task_samples() returned them (the CLI checks them before loading the model)."""
    with run_lock(output_dir, enabled=dist_info().is_main):  # re-entrant: the CLI holds it already
        return _evaluate(model, tasks, output_dir, batch_size, limit, seed, config, progress, max_stored_chars,
                         samples, skip_bad_images)


def _evaluate(model, tasks, output_dir, batch_size, limit, seed, config, progress, max_stored_chars, samples,
              skip_bad_images) -> dict[str, Any]:
    run = RunDir(output_dir)
    check_capabilities(model, tasks)
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HalbenchError(f"task(s) {dup} given twice; a run holds each task once (POPE runs all its "
                            "splits in one task; use task options to pick splits)")
    # Validate every task's data and images before anything is written to the run directory.
    all_samples = samples if samples is not None else [task_samples(t, limit, skip_bad_images) for t in tasks]
    for task in tasks:
        task.prepare()
    from halbench.redact import redact

    config = redact(dict(config or {}))  # config.yaml is written redacted: compare like with like
    dist = dist_info()
    if dist.is_main:
        _claim_run_dir(run, config)
    barrier(dist)
    seed_everything(seed)  # same seed on every rank: HF sampling is seeded per request id anyway
    started = time.time()
    results: dict[str, Any] = {
        "halbench_version": environment()["halbench_version"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {**model.describe(), "fingerprint": model.fingerprint()},
        "tasks": {},
    }
    for task, samples in zip(tasks, all_samples):
        records = run_task(model, task, samples, run, batch_size, progress and dist.is_main, dist, max_stored_chars)
        if records is None:
            continue
        results["tasks"][task.name] = _task_result(task, records, run)
        _compact(run.samples_path(task.name), records)
        for extra in _records_files(run, task)[1:]:
            extra.unlink()  # merged into samples/<task>.jsonl above
    sources = {k: t["data_source"] for k, t in results["tasks"].items() if t.get("data_source")}
    results["data_source"] = "; ".join(f"{k}: {v}" for k, v in sources.items()) or None
    # what the model learned while generating (e.g. the id an HTTP server answered with), fingerprint kept
    results["model"].update({k: v for k, v in model.describe().items() if v is not None})
    results.update({"environment": environment(), "seed": seed, "config": config,
                    "elapsed_s": round(time.time() - started, 2), "world_size": dist.world_size})
    if dist.is_main:
        atomic_write_json(run.results_path, results)
    barrier(dist)
    return results


def _claim_run_dir(run: RunDir, config: dict[str, Any]) -> None:
    """Refuse to mix two different runs in one directory; resume when the configuration matches."""
    existing = run.read_config()
    if existing is not None and existing != config:
        raise HalbenchError(
            f"{run.path} holds a run with a different configuration; use another --output-dir or "
            f"--overwrite (differs in: {sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))})"
        )
    run.write_config(config)


def _compact(path: Path, records: list[dict]) -> None:
    """Rewrite samples/<task>.jsonl atomically with exactly one line per sample, in sample order."""

    atomic_write_text(path, "".join(strict_json(r, redact_urls=False, ensure_ascii=False) + "\n" for r in records))
