"""Shared fixtures/helpers for the training tests (no tests here): a tiny random LLaVA and small data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

OBJECTS = ["dog", "cat", "car", "chair", "pizza", "clock", "bus", "cup"]


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray((rng.random((36, 36, 3)) * 255).astype("uint8")).save(p)
        paths.append(p.name)
    return paths


def pair_rows(images: list[str], n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b, c = OBJECTS[i % 8], OBJECTS[(i + 3) % 8], OBJECTS[(i + 5) % 8]
        rows.append({"id": f"r{i}", "image": images[i % len(images)], "prompt": "Describe this image.",
                     "chosen": f"A {a} and a {b}.", "rejected": f"A {a}, a {b} and a {c}.", "objects": [a, b]})
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from halbench.testing.tiny import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), seed=0)


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    images = make_images(folder, 8)
    return write_jsonl(folder / "pairs.jsonl", pair_rows(images, 8))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Reference log-probs, file hashes and dataset images go to a per-test cache dir."""
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NLTK_DATA", os.environ.get("NLTK_DATA", str(Path(__file__).parents[2] / "shared" / "nltk_data")))


def cfg_kwargs(model: Path, data: Path, out: Path, **over) -> dict:
    kw = dict(model=str(model), data=str(data), output_dir=str(out), per_device_batch_size=2, num_epochs=1,
              learning_rate=1e-3, save_steps=0, warmup_ratio=0.0, seed=0, sft_weight=0.0)
    kw.update(over)
    return kw


def load_weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(ckpt) / "model.safetensors"))
