"""Reference-model log-probs, computed once and cached on disk (offline DPO needs no reference model in
memory while training).

Key = model fingerprint (sha256 of the checkpoint's weight, config and tokenizer files, via
halbench.models.hf.dir_fingerprint: the weights, not the path) + data fingerprint (sha256 over every pair's
prompt, chosen, rejected and image-file content hash, plus max_length and a format version). Anything that
changes the numbers changes the key; a stale file can never be read for other data.

Layout: CACHE/ref_logps/<model_fp>-<data_fp>.pt holding {"logps": float64 [N, 2] (chosen, rejected), "meta"}.
CACHE = cfg.ref_cache_dir, else $HALBENCH_CACHE_DIR, else ~/.cache/halbench. Writes are atomic (temp+rename).

Distributed: each process computes rows rank::world, rank 0 gathers and writes, every process then reads the
same file, so all ranks train against identical reference values.

Peers: TRL's `precompute_ref_log_probs` caches through `datasets` fingerprints, which do not cover image files
referenced by path; here the image bytes are part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

FORMAT_VERSION = "ref-logps-v1"


def cache_root(ref_cache_dir: str | None = None) -> Path:
    if ref_cache_dir:
        return Path(ref_cache_dir)
    return Path(os.environ.get("HALBENCH_CACHE_DIR") or Path.home() / ".cache" / "halbench")


def data_fingerprint(rows: Sequence[Any], max_length: int, extra: str = "") -> str:
    """sha256 (first 16 hex) over the pairs exactly as trained on, including image bytes."""
    from halbench.runs import file_sha256

    h = hashlib.sha256(f"{FORMAT_VERSION}|{max_length}|{extra}\n".encode())
    image_hashes: dict[str, str] = {}
    for r in rows:
        img = ""
        if isinstance(r.image, str):
            img = image_hashes.get(r.image) or image_hashes.setdefault(r.image, file_sha256(r.image, n=64))
        h.update(json.dumps([r.prompt, r.chosen, r.rejected, img]).encode() + b"\n")
    return h.hexdigest()[:16]


class RefLogpCache:
    def __init__(self, root: str | Path):
        self.dir = Path(root) / "ref_logps"

    def path(self, model_fp: str, data_fp: str) -> Path:
        return self.dir / f"{model_fp}-{data_fp}.pt"

    def load(self, model_fp: str, data_fp: str, n_rows: int) -> torch.Tensor | None:
        p = self.path(model_fp, data_fp)
        if not p.is_file():
            return None
        blob = torch.load(p, map_location="cpu", weights_only=True)
        logps = blob["logps"]
        return logps if logps.shape == (n_rows, 2) else None

    def save(self, model_fp: str, data_fp: str, logps: torch.Tensor, meta: dict[str, Any]) -> Path:
        p = self.path(model_fp, data_fp)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"logps": logps.cpu(), "meta": meta}, tmp)
        tmp.replace(p)
        return p


def precompute(accelerator: Any, n_rows: int, batch_size: int,
               compute: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]],
               cache: RefLogpCache, model_fp: str, data_fp: str, meta: dict[str, Any]) -> tuple[torch.Tensor, bool]:
    """[N, 2] reference log-probs from the cache, or computed with `compute(indices) -> (chosen, rejected)`
    sharded over processes and cached. Returns (logps, was_cached)."""
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    cached = cache.load(model_fp, data_fp, n_rows)
    if cached is not None:
        return cached, True
    mine = list(range(accelerator.process_index, n_rows, accelerator.num_processes))
    results: list[tuple[int, float, float]] = []
    batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    for idx in tqdm(batches, desc="reference log-probs", disable=not accelerator.is_main_process):
        chosen, rejected = compute(idx)
        results.extend(zip(idx, chosen.double().tolist(), rejected.double().tolist()))
    if accelerator.num_processes > 1:
        results = gather_object(results)
    if accelerator.is_main_process:
        logps = torch.full((n_rows, 2), float("nan"), dtype=torch.float64)
        for i, c, r in results:
            logps[i, 0], logps[i, 1] = c, r
        if torch.isnan(logps).any():
            raise RuntimeError("reference log-prob precompute left rows without a value")
        cache.save(model_fp, data_fp, logps, meta)
    accelerator.wait_for_everyone()
    loaded = cache.load(model_fp, data_fp, n_rows)
    if loaded is None:
        raise RuntimeError(f"reference log-prob cache {cache.path(model_fp, data_fp)} was not written")
    return loaded, False
