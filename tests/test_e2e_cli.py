"""End to end through the installed `halbench` command on a freshly built --fast world (real tiny LLaVA,
real POPE/CHAIR tasks): a run, and a run killed with SIGKILL mid-way then resumed, give identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halbench.runs import read_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_world(tmp_path_factory):
    from halbench.world.build import FAST, build_world

    out = tmp_path_factory.mktemp("world")
    build_world(out, FAST, progress=False, echo=lambda *a: None)
    return out


def halbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "halbench", *args]


def eval_args(world: Path, out: Path) -> list[str]:
    return ["eval", "--world", str(world), "--tasks", "pope", "--limit", "48", "--batch-size", "4",
            "--output-dir", str(out), "--no-report", "--task-option", "pope.max_new_tokens=24"]


def test_sigkill_resume_through_cli(fast_world, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(halbench(*eval_args(fast_world, clean)), check=True, capture_output=True)
    proc = subprocess.Popen(halbench(*eval_args(fast_world, killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    samples = killed / "samples" / "pope.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not samples.exists() or len(samples.read_bytes().splitlines()) < 8):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert 8 <= len(read_records(samples)) < 48 and not (killed / "results.json").exists()
    subprocess.run(halbench(*eval_args(fast_world, killed)), check=True, capture_output=True)
    a = json.loads((clean / "results.json").read_text())["tasks"]["pope"]
    b = json.loads((killed / "results.json").read_text())["tasks"]["pope"]
    assert a["metrics"] == b["metrics"]
    ra, rb = read_records(clean / "samples" / "pope.jsonl"), read_records(samples)
    assert [r["id"] for r in ra] == [r["id"] for r in rb] and len({r["id"] for r in rb}) == 48
    assert [r["response"] for r in ra] == [r["response"] for r in rb]


def test_missing_image_is_clear_and_writes_nothing(fast_world, tmp_path):
    import shutil

    world = tmp_path / "w"
    shutil.copytree(fast_world, world)
    victim = sorted((world / "images").iterdir())[0]
    victim.unlink()
    out = tmp_path / "run"
    r = subprocess.run(halbench("eval", "--world", str(world), "--tasks", "chair", "--output-dir", str(out)),
                       capture_output=True, text=True)
    assert r.returncode == 2 and victim.name in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_prefix_cache_gives_identical_answers(fast_world, tmp_path):
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    subprocess.run(halbench(*eval_args(fast_world, plain)), check=True, capture_output=True)
    subprocess.run(halbench(*eval_args(fast_world, cached), "--prefix-cache"), check=True, capture_output=True)
    a = [r["response"] for r in read_records(plain / "samples" / "pope.jsonl")]
    b = [r["response"] for r in read_records(cached / "samples" / "pope.jsonl")]
    assert len(a) == 48 and a == b
    assert json.loads((cached / "results.json").read_text())["model"]["prefix_cache"] is True
