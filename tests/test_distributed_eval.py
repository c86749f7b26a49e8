"""Data-parallel evaluation with two real processes (torchrun, gloo on CPU): every sample is evaluated exactly
once across the ranks and the merged results equal a single-process run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from halbench.runs import read_records

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from halbench.evaluator import evaluate
from tests.toy_plugins import ToyModel, ToyTask
import os
log = {log!r} + "." + os.environ.get("RANK", "0")
evaluate(ToyModel(log=log), [ToyTask(n=25)], {out!r}, batch_size=3, progress=False, config={{"x": 1}})
"""


def _script(tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"{name}.py"
    p.write_text(SCRIPT.format(repo=str(REPO), log=str(tmp_path / f"{name}.log"), out=str(tmp_path / name)))
    return p


def test_two_process_eval_shards_without_overlap(tmp_path):
    pytest.importorskip("torch.distributed")
    subprocess.run([sys.executable, str(_script(tmp_path, "single"))], check=True, cwd=REPO)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--standalone", str(_script(tmp_path, "dp"))],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    ids0 = (tmp_path / "dp.log.0").read_text().split()
    ids1 = (tmp_path / "dp.log.1").read_text().split()
    assert ids0 and ids1 and not set(ids0) & set(ids1)  # both ranks worked, on different samples
    assert sorted(ids0 + ids1) == sorted(f"q{i}" for i in range(25))  # none skipped, none twice
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    dp = json.loads((tmp_path / "dp" / "results.json").read_text())
    assert dp["world_size"] == 2
    assert dp["tasks"]["toy"]["metrics"] == single["tasks"]["toy"]["metrics"]
    assert [r["id"] for r in read_records(tmp_path / "dp" / "samples" / "toy.jsonl")] == [f"q{i}" for i in range(25)]
    assert not list((tmp_path / "dp" / "samples").glob("*.rank*.jsonl"))
