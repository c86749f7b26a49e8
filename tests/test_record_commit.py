"""RecordWriter's group commit: fsync grouped per batch / N records / T seconds, every record handed to the
kernel at once (so a SIGKILL loses nothing written), a torn tail dropped on resume, and an evaluator run killed
with SIGKILL mid-way resumes to the same records and metrics as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halbench import runs
from halbench.runs import RecordWriter, read_records

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fsyncs(monkeypatch):
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(runs.os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def test_every_record_is_visible_to_another_reader_at_once(tmp_path, fsyncs):
    path = tmp_path / "s.jsonl"
    with RecordWriter(path, fsync_every_s=3600, fsync_every_n=10**6) as w:
        for i in range(5):
            w.write({"id": i, "text": "é" * i})
            assert [r["id"] for r in read_records(path)] == list(range(i + 1))  # no buffered tail
        assert fsyncs == []  # ... without one fsync so far
    assert len(fsyncs) == 1  # close() commits what is pending


def test_commit_fsyncs_only_when_the_time_bound_has_passed(tmp_path, fsyncs, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(runs.time, "monotonic", lambda: clock[0])
    w = RecordWriter(tmp_path / "s.jsonl", fsync_every_s=1.0, fsync_every_n=1000)
    for batch in range(6):  # 6 batches of 4 records, 0.4 s apart
        for i in range(4):
            w.write({"id": f"{batch}-{i}"})
        clock[0] += 0.4
        w.commit()
    assert w.n_fsyncs == 2  # after 1.2 s and after 2.4 s, not after every batch
    w.commit()  # nothing pending: no fsync
    assert w.n_fsyncs == 2
    w.write({"id": "last"})
    w.commit()  # pending, but only 0 s since the last fsync
    assert w.n_fsyncs == 2
    w.close()
    assert w.n_fsyncs == 3 and len(fsyncs) == 3
    w.close()  # idempotent
    assert len(read_records(tmp_path / "s.jsonl")) == 25


def test_count_bound_and_per_record_mode(tmp_path, fsyncs):
    with RecordWriter(tmp_path / "a.jsonl", fsync_every_s=3600, fsync_every_n=4) as w:
        for i in range(10):
            w.write({"id": i})
        assert w.n_fsyncs == 2  # at records 4 and 8
    with RecordWriter(tmp_path / "b.jsonl", fsync_every_s=0) as w:
        for i in range(3):
            w.write({"id": i})
        assert w.n_fsyncs == 3  # fsync_every_s=0: one per record, the old behaviour


def test_torn_tail_after_group_commit_is_dropped(tmp_path):
    path = tmp_path / "s.jsonl"
    with RecordWriter(path) as w:
        w.write({"id": "a"})
        w.write({"id": "b"})
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "respo')  # a write cut short by a crash
    assert [r["id"] for r in read_records(path, repair=True)] == ["a", "b"]
    with RecordWriter(path) as w:  # appending after the repair gives a clean file
        w.write({"id": "c"})
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]


WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from halbench.runs import RecordWriter
w = RecordWriter(Path({path!r}), fsync_every_s=3600, fsync_every_n=10**6)  # no fsync while it runs
for i in range(100000):
    w.write({{"id": i, "pad": "x" * (i % 97)}})
    print(i, flush=True)
"""


def test_sigkill_loses_no_record_that_write_returned_for(tmp_path):
    path = tmp_path / "s.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    acked = -1
    while acked < 300:
        acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    ids = [r["id"] for r in read_records(path, repair=True)]
    assert ids == list(range(len(ids))) and len(ids) > acked  # a gap-free prefix holding every acked record


SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from halbench.evaluator import evaluate
from tests.toy_plugins import ToyModel, ToyTask
evaluate(ToyModel(sleep={sleep}), [ToyTask(n=40)], {out!r}, batch_size={bs}, progress=False, config={{"x": 1}})
"""


def _evaluate_in_child(out: Path, sleep: float, bs: int) -> subprocess.Popen:
    code = SCRIPT.format(repo=str(REPO), sleep=sleep, out=str(out), bs=bs)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO)


@pytest.mark.parametrize("bs", [1, 4])
def test_evaluator_sigkill_mid_run_resumes_to_identical_results(tmp_path, bs):
    assert _evaluate_in_child(tmp_path / "clean", 0.0, bs).wait(60) == 0
    proc = _evaluate_in_child(tmp_path / "killed", 0.05, bs)
    samples = tmp_path / "killed" / "samples" / "toy.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 8):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    n_before = len(read_records(samples))
    assert 8 <= n_before < 40 and not (tmp_path / "killed" / "results.json").exists()
    assert _evaluate_in_child(tmp_path / "killed", 0.0, bs).wait(60) == 0
    clean = json.loads((tmp_path / "clean" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["tasks"]["toy"]["metrics"] == clean["tasks"]["toy"]["metrics"]
    assert read_records(samples) == read_records(tmp_path / "clean" / "samples" / "toy.jsonl")
