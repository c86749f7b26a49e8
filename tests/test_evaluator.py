"""The evaluator's contract: crash-safe records, resume after SIGKILL, errors never scored, atomic results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halbench.errors import DataError, HalbenchError
from halbench.evaluator import evaluate
from halbench.runs import read_records
from tests.toy_plugins import ToyModel, ToyTask

REPO = Path(__file__).resolve().parent.parent


def test_records_and_results(tmp_path):
    res = evaluate(ToyModel(), [ToyTask(n=10)], tmp_path / "run", batch_size=4, progress=False)
    t = res["tasks"]["toy"]
    assert t["n_samples"] == 10 and t["n_errors"] == 0
    assert t["directions"]["accuracy"] == "higher"
    recs = read_records(tmp_path / "run" / "samples" / "toy.jsonl")
    assert [r["id"] for r in recs] == [f"q{i}" for i in range(10)]
    # q0: label no (0 % 3 == 0), model says yes (even) -> wrong
    assert recs[0]["pred"] == "yes" and recs[0]["correct"] is False
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["model"]["fingerprint"] == "toy0000"
    assert on_disk["environment"]["libraries"]["torch"]
    assert len(on_disk["tasks"]["toy"]["fingerprints"]["prompts"]) == 16


def test_errors_are_counted_not_scored(tmp_path):
    res = evaluate(ToyModel(fail_ids=("q1", "q2")), [ToyTask(n=6)], tmp_path / "r", progress=False)
    recs = read_records(tmp_path / "r" / "samples" / "toy.jsonl")
    failed = [r for r in recs if r["error"]]
    assert [r["id"] for r in failed] == ["q1", "q2"] and all("pred" not in r for r in failed)
    assert res["tasks"]["toy"]["n_errors"] == 2 and res["tasks"]["toy"]["metrics"]["n_errors"] == 2


def test_resume_retries_errors_and_skips_done(tmp_path):
    evaluate(ToyModel(fail_ids=("q3",)), [ToyTask(n=8)], tmp_path / "r", batch_size=2, progress=False)
    log = tmp_path / "calls.log"
    res = evaluate(ToyModel(log=log), [ToyTask(n=8)], tmp_path / "r", batch_size=2, progress=False)
    assert log.read_text().split() == ["q3"]  # only the failed sample was asked again
    assert res["tasks"]["toy"]["n_errors"] == 0
    assert len(read_records(tmp_path / "r" / "samples" / "toy.jsonl")) == 8


def test_missing_image_fails_before_writing(tmp_path):
    with pytest.raises(DataError, match="nope.png"):
        evaluate(ToyModel(), [ToyTask(n=3, image=str(tmp_path / "nope.png"))], tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_different_config_refuses_to_mix(tmp_path):
    evaluate(ToyModel(), [ToyTask(n=2)], tmp_path / "r", config={"a": 1}, progress=False)
    with pytest.raises(HalbenchError, match="different configuration"):
        evaluate(ToyModel(), [ToyTask(n=2)], tmp_path / "r", config={"a": 2}, progress=False)


def test_torn_last_line_is_dropped(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "resp')
    assert [r["id"] for r in read_records(p, repair=True)] == ["a", "b"]
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    p.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"s.jsonl:2"):
        read_records(p)


SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from halbench.evaluator import evaluate
from tests.toy_plugins import ToyModel, ToyTask
evaluate(ToyModel(sleep={sleep}), [ToyTask(n=30)], {out!r}, batch_size=3, progress=False, config={{"x": 1}})
"""


def _run_script(out: Path, sleep: float) -> subprocess.Popen:
    code = SCRIPT.format(repo=str(REPO), sleep=sleep, out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    assert _run_script(tmp_path / "clean", 0.0).wait(60) == 0
    proc = _run_script(tmp_path / "killed", 0.15)
    samples = tmp_path / "killed" / "samples" / "toy.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    n_before = len(read_records(samples))
    assert 6 <= n_before < 30 and not (tmp_path / "killed" / "results.json").exists()
    assert _run_script(tmp_path / "killed", 0.0).wait(60) == 0
    clean = json.loads((tmp_path / "clean" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["tasks"]["toy"]["metrics"] == clean["tasks"]["toy"]["metrics"]
    ids = [r["id"] for r in read_records(samples)]
    assert ids == [f"q{i}" for i in range(30)]  # none duplicated, none lost


class FlakyScoreTask(ToyTask):
    """Scoring fails (like an unreachable judge) until `fixed` is set; the record keeps its response."""

    fixed = False

    def score(self, sample, response):
        rec = super().score(sample, response)
        rec["judge_error"] = None if self.fixed else "judge unreachable"
        return rec

    def needs_rescore(self, record):
        return bool(record.get("judge_error"))


def test_failed_scoring_is_rescored_without_regenerating(tmp_path):
    evaluate(ToyModel(), [FlakyScoreTask(n=4)], tmp_path / "r", progress=False)
    log = tmp_path / "calls.log"
    task = FlakyScoreTask(n=4)
    task.fixed = True
    evaluate(ToyModel(log=log), [task], tmp_path / "r", progress=False)
    assert not log.exists()  # no generation the second time
    recs = read_records(tmp_path / "r" / "samples" / "toy.jsonl")
    assert len(recs) == 4 and all(r["judge_error"] is None for r in recs)
