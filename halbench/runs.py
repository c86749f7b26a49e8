"""The run directory: everything one `halbench eval/train/train-and-eval` produced.

    RUN/
      config.yaml          fully resolved configuration (what produced this run)
      results.json         written atomically at the end; see `results_skeleton`
      samples/<task>.jsonl one record per line, appended as produced, fsync'd per group (crash-safe, resumable)
      artifacts/<task>/    files a task produced (plots, histograms) referenced from results.json
      train/               training runs only: metrics.jsonl (one line per logged step), checkpoints
      report.html          the report

results.json layout:
    {
      "halbench_version": str, "created": iso8601,
      "model": {"backend", "model_id", "fingerprint", "capabilities"},
      "tasks": {
        "<task>": {
          "task": {"name", "variant", "version", "options"},
          "metrics": {name: value},
          "directions": {name: "higher"|"lower"|"none"},
          "n_samples": int, "n_errors": int,
          "fingerprints": {"data": {filename: sha256[:16]}, "prompts": sha256[:16]},
          "artifacts": {label: relative path}   # optional
        }
      },
      "environment": {"git_commit", "python", "platform", "libraries": {name: version}},
      "seed": int, "config": {...}
    }
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from halbench.errors import DataError


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + fsync + rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; results and reports are meant to be shared like any other output
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_json(obj: Any, *, redact_urls: bool = True, **kw: Any) -> str:
    """JSON that any parser reads: NaN/inf become null (json.dumps(allow_nan=False) then cannot fail on them);
    with redact_urls, every URL's credentials are redacted (halbench.redact). Sample records keep model text
    as produced (redact_urls=False): what halbench itself puts in them (errors, judge ids) is redacted at source."""
    from halbench.redact import redact

    obj = _finite(obj)
    return json.dumps(redact(obj) if redact_urls else obj, allow_nan=False, default=str, **kw)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, strict_json(obj, indent=2, sort_keys=False) + "\n")


def file_sha256(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


class RecordWriter:
    """Append-only JSONL writer with group commit.

    Every `write` hands one whole line to the kernel at once (write + flush), so a SIGKILL of this process
    loses nothing already written: the page cache belongs to the kernel, not to the process. `fsync`, which
    is what survives an OS crash or power loss and costs milliseconds, is grouped: it runs when `commit()` is
    called (the evaluator calls it after every batch) and at least `fsync_every_s` seconds have passed since
    the last one or `fsync_every_n` records are waiting, and always at `close()`. So a power loss costs at most
    the last ~`fsync_every_s` seconds of records, which a resume regenerates; a torn last line is dropped by
    `read_records`. `fsync_every_s=0` restores an fsync per record.
    """

    def __init__(self, path: Path, *, fsync_every_s: float = 1.0, fsync_every_n: int = 256):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fsync_every_s, self.fsync_every_n = fsync_every_s, fsync_every_n
        self._f = open(path, "a", encoding="utf-8")
        self._pending = 0
        self._last_sync = time.monotonic()
        self.n_fsyncs = 0

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(strict_json(record, redact_urls=False, ensure_ascii=False) + "\n")
        self._f.flush()
        self._pending += 1
        if self.fsync_every_s <= 0 or self._pending >= self.fsync_every_n:
            self._sync()

    def commit(self) -> None:
        """End of a group (a batch): fsync if the time or count bound says so."""
        if self._pending and time.monotonic() - self._last_sync >= self.fsync_every_s:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._f.fileno())
        self._pending, self._last_sync = 0, time.monotonic()
        self.n_fsyncs += 1

    def close(self) -> None:
        if not self._f.closed:
            if self._pending:
                self._sync()
            self._f.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a samples file. A torn last line (the process was killed mid-write) is dropped and,
    with repair=True, truncated away; a malformed line elsewhere is an error naming file and line."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            records.append(json.loads(line))
            good_bytes += len(line) + 1
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            is_last = all(not rest.strip() for rest in lines[i + 1:])
            if not is_last:
                raise DataError(f"malformed record ({getattr(e, 'msg', None) or e.reason})", path=path,
                                line=i + 1) from e
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(min(good_bytes, len(raw)))
            break
    return records


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def samples_path(self, task_name: str) -> Path:
        return self.path / "samples" / f"{task_name}.jsonl"

    def artifacts_dir(self, task_name: str) -> Path:
        return self.path / "artifacts" / task_name

    def write_config(self, config: dict[str, Any]) -> None:
        from halbench.redact import redact

        atomic_write_text(self.config_path, yaml.safe_dump(redact(config), sort_keys=False))

    def read_config(self) -> dict[str, Any] | None:
        if not self.config_path.exists():
            return None
        return yaml.safe_load(self.config_path.read_text()) or {}

    def read_results(self) -> dict[str, Any]:
        if not self.results_path.exists():
            raise DataError("no results.json: not a finished halbench run", path=self.path)
        try:
            return json.loads(self.results_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"malformed results.json ({e.msg})", path=self.results_path, line=e.lineno) from e

    def iter_task_samples(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for p in sorted((self.path / "samples").glob("*.jsonl")):
            yield p.stem, read_records(p)
