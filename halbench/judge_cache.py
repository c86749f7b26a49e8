"""SQLite cache of judge verdicts, so a re-run of a judged benchmark costs nothing.

Where: `$HALBENCH_CACHE_DIR/judge_cache.sqlite`, else `$XDG_CACHE_HOME/halbench/...`, else
`~/.cache/halbench/...` -- the user's cache dir, never inside the package or a run directory.

Key: sha256 over (judge id, system prompt, full prompt, image content hash, max tokens). The judge id names the
backend and the *requested* model (e.g. `openai:gpt-4o@http://host/v1`), so a different judge never reuses
another judge's verdicts; the model id the endpoint actually returned is stored next to each verdict and
reported with it. Only replies a task could parse are stored (a failure is retried on the next run, never
replayed). API keys never reach this file: they are not part of any key material, prompt or judge id.

Safe for the threads of one process (one connection + a lock) and for several processes (WAL, busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halbench.errors import HalbenchError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    judge_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    text TEXT NOT NULL,
    model_id TEXT,
    usage TEXT,
    created REAL NOT NULL
)
"""


def default_cache_dir() -> Path:
    """$HALBENCH_CACHE_DIR, else $XDG_CACHE_HOME/halbench, else ~/.cache/halbench."""
    if os.environ.get("HALBENCH_CACHE_DIR"):
        return Path(os.environ["HALBENCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "halbench"


def cache_key(judge_id: str, prompt: str, system: str | None = None, image: str | None = None,
              max_tokens: int | None = None) -> str:
    """The verdict key: judge id + everything the judge sees. The image enters by content, not by path."""
    image_hash = _file_hash(image) if image else None
    material = json.dumps([judge_id, system, prompt, image_hash, max_tokens], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    text: str
    model_id: str | None
    usage: dict[str, int] | None


class JudgeCache:
    """get/put verdict texts by key. `JudgeCache()` opens the default file; pass a path for another."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_dir() / "judge_cache.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as e:
            raise HalbenchError(f"cannot open the judge cache {self.path}: {e} "
                                "(set HALBENCH_CACHE_DIR, or turn the cache off with judge_cache=off)") from e
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedVerdict | None:
        with self._lock:
            row = self._db.execute("SELECT text, model_id, usage FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return CachedVerdict(row[0], row[1], json.loads(row[2]) if row[2] else None)

    def put(self, key: str, judge_id: str, prompt: str, text: str, model_id: str | None,
            usage: dict[str, Any] | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, judge_id, prompt, text, model_id, json.dumps(usage) if usage else None, time.time()),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
