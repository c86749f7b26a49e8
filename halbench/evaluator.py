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
from halbench.runs import RecordWriter, RunDir, atomic_write_json, atomic_write_text, file_sha256, read_records
from halbench.schema import Response
from halbench.task import Task


def check_capabilities(model: Model, tasks: list[Task]) -> None:
    for task in tasks:
        missing = set(task.required_capabilities) - set(model.capabilities)
        if missing:
            raise HalbenchError(
                f"model {model.model_id!r} lacks {sorted(missing)} needed by task {task.name!r} "
                f"(it has {sorted(model.capabilities)})"
            )


def task_samples(task: Task, limit: int | None) -> list[dict[str, Any]]:
    """The task's samples (first `limit`), checked for unique ids and existing images before any request."""
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
    return samples


def _record(sample: dict, request, response: Response, scored: dict | None) -> dict[str, Any]:
    base = {"id": str(sample["id"]), "prompt": request.prompt, "image": request.image,
            "response": response.text, "error": response.error}
    return {**base, **(scored or {})}


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
             progress: bool = True, dist: Dist = Dist()) -> list[dict[str, Any]] | None:
    """Generate + score every pending sample of one task (this process's share of them under a
    data-parallel launch); returns all records in sample order on the main process, None elsewhere."""
    path = run.samples_path(task.name)
    if dist.enabled:
        path = path.with_name(f"{task.name}.rank{dist.rank}.jsonl")
    done = {k: r for k, r in _read_all(run, task).items() if r.get("error") is None}
    pending = [s for s in samples if str(s["id"]) not in done][dist.rank::dist.world_size]
    rescore = [s for s in samples if str(s["id"]) in done and task.needs_rescore(done[str(s["id"])])]
    rescore = rescore[dist.rank::dist.world_size]
    barrier(dist)  # all ranks have split the same pending list before anyone writes a record
    bar = tqdm(total=len(pending), desc=task.full_name, disable=not progress, unit="sample")
    with RecordWriter(path) as writer:
        _rescore(task, rescore, done, writer)
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            _generate_and_score(model, task, batch, writer)
            writer.commit()
            bar.update(len(batch))
    bar.close()
    barrier(dist)  # every process has finished writing its records
    if not dist.is_main:
        return None
    latest = _read_all(run, task)
    return [latest[str(s["id"])] for s in samples]


def _generate_and_score(model: Model, task: Task, batch: list[dict[str, Any]], writer: RecordWriter) -> None:
    requests = [task.request(s) for s in batch]
    responses = model.generate(requests)
    if len(responses) != len(requests):
        raise RuntimeError(f"{type(model).__name__}.generate returned {len(responses)} responses "
                           f"for {len(requests)} requests")
    ok = [i for i, r in enumerate(responses) if r.ok]
    scored = dict(zip(ok, task.score_batch([batch[i] for i in ok], [responses[i] for i in ok])))
    for i, (s, req, resp) in enumerate(zip(batch, requests, responses)):
        writer.write(_record(s, req, resp, scored.get(i)))


def _rescore(task: Task, samples: list[dict], done: dict[str, dict], writer: RecordWriter) -> None:
    """Score stored responses again (their scoring failed before, e.g. an unreachable judge)."""
    if not samples:
        return
    responses = [Response(text=done[str(s["id"])]["response"]) for s in samples]
    for s, resp, scored in zip(samples, responses, task.score_batch(samples, responses)):
        rec = _record(s, task.request(s), resp, scored)
        writer.write(rec)


def _task_result(task: Task, records: list[dict], run: RunDir) -> dict[str, Any]:
    task.artifacts_dir = run.artifacts_dir(task.name)
    metrics = task.aggregate(records)
    n_errors = sum(r.get("error") is not None for r in records)
    artifacts = {k: str(Path("artifacts") / task.name / v) for k, v in task.artifacts.items()}
    return {
        "task": task.describe(),
        "metrics": metrics,
        "directions": {m.name: m.direction for m in task.metrics},
        "n_samples": len(records),
        "n_errors": n_errors,
        "fingerprints": {
            "data": {str(p): file_sha256(p) for p in task.data_files()},
            "prompts": _prompt_hash(records),
        },
        "artifacts": artifacts,
    }


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
             progress: bool = True) -> dict[str, Any]:
    """Run every task, write the run directory, return results.json's content."""
    run = RunDir(output_dir)
    check_capabilities(model, tasks)
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HalbenchError(f"task(s) {dup} given twice; a run holds each task once (POPE runs all its "
                            "splits in one task; use task options to pick splits)")
    # Validate every task's data and images before anything is written to the run directory.
    all_samples = [task_samples(task, limit) for task in tasks]
    for task in tasks:
        task.prepare()
    config = dict(config or {})
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
        records = run_task(model, task, samples, run, batch_size, progress and dist.is_main, dist)
        if records is None:
            continue
        results["tasks"][task.name] = _task_result(task, records, run)
        _compact(run.samples_path(task.name), records)
        for extra in _records_files(run, task)[1:]:
            extra.unlink()  # merged into samples/<task>.jsonl above
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
    import json

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
