"""A run never destroys or doubles another: the output-dir lock, config checks before the model loads,
train-and-eval refusing a finished dir of another method before its base eval, a failure page that never
replaces a good report, bounded stored text, and training resume that never unpickles a planted file."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from halbench.cli import main
from halbench.errors import HalbenchError
from halbench.run_lock import LOCK_NAME, RunLocked, run_lock
from halbench.runs import read_records
from halbench.stored_text import cap_record
from tests.misbehaving_server import JudgeServer

POPE = ["eval", "--tasks", "pope", "--limit", "4", "--batch-size", "4", "--no-report",
        "--task-option", "pope.max_new_tokens=4"]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- the lock ---------------------------------------------------------------------------------------------
def test_second_process_refused_naming_the_first_pid(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "halbench", *POPE[:4], "40", *POPE[5:],
                              "--output-dir", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / LOCK_NAME).exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "halbench", *POPE, "--output-dir", str(out)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"PID {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.wait(300)
    assert first.returncode == 0
    assert len(read_records(out / "samples" / "pope.jsonl")) == 40  # no duplicates from the refused one
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from halbench.run_lock import run_lock\n"
                               f"with run_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
        with run_lock(out):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    assert (out / LOCK_NAME).read_text().startswith(str(holder.pid))  # left behind by the dead process
    r = CliRunner().invoke(main, [*POPE, "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()


def test_lock_is_reentrant_in_one_process(tmp_path):
    with run_lock(tmp_path / "x"):
        with run_lock(tmp_path / "x"):
            assert (tmp_path / "x" / LOCK_NAME).exists()
        assert (tmp_path / "x" / LOCK_NAME).exists()
    assert not (tmp_path / "x").exists()  # created for the lock, empty again: removed


def test_without_flock_the_pid_in_the_file_decides(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    d = tmp_path / "nfs"
    d.mkdir()
    (d / LOCK_NAME).write_text(f"{os.getppid()} halbench eval ...\n")  # a live process
    with pytest.raises(RunLocked, match=f"PID {os.getppid()}"):
        with run_lock(d):
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / LOCK_NAME).write_text(f"{dead.pid} halbench eval ...\n")
    with run_lock(d):
        assert (d / LOCK_NAME).read_text().startswith(str(os.getpid()))


# -- configuration checks before anything loads or is written ---------------------------------------------
def test_eval_into_dir_of_another_config_refuses_before_model_loads(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, [*POPE, "--output-dir", str(out)]).exit_code == 0
    before = tree_digest(out)
    import halbench.models

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the configuration check")
    monkeypatch.setattr(halbench.models, "load_model", no_load)
    r = CliRunner().invoke(main, [*POPE, "--seed", "1", "--output-dir", str(out)])
    assert r.exit_code == 2 and "different configuration" in r.output and "seed" in r.output, r.output
    assert tree_digest(out) == before


def _fake_finished_train_and_eval(out: Path) -> None:
    """On disk what a finished `train-and-eval --method dpo` leaves (its content is what matters here)."""
    (out / "train" / "final").mkdir(parents=True)
    (out / "train" / "final" / "config.json").write_text("{}")
    (out / "train" / "config.json").write_text(json.dumps({"method": "dpo", "beta": 0.1, "seed": 0}))
    (out / "train" / "status.json").write_text(json.dumps({"status": "ok", "error": None,
                                                           "checkpoint": str(out / "train" / "final")}))
    for sub in ("base", "trained"):
        (out / sub).mkdir()
        (out / sub / "results.json").write_text('{"tasks": {}}')
    (out / "report.html").write_text("<html>the good comparison report</html>")


def test_train_and_eval_with_another_method_refuses_before_base_eval(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _fake_finished_train_and_eval(out)
    before = tree_digest(out)
    import halbench.models

    monkeypatch.setattr(halbench.models, "load_model", lambda *a, **k: pytest.fail("base eval started"))
    r = CliRunner().invoke(main, ["train-and-eval", "--method", "online-dpo", "--tasks", "pope", "--limit", "2",
                                  "--output-dir", str(out)])
    assert r.exit_code == 2, r.output
    assert "finished run (dpo)" in r.output and "different settings" in r.output
    assert tree_digest(out) == before  # report, status and training state untouched


def test_failed_training_never_replaces_a_good_report(tmp_path):
    out = tmp_path / "out"
    (out / "trained").mkdir(parents=True)
    (out / "trained" / "results.json").write_text('{"tasks": {}}')
    (out / "report.html").write_text("<html>the good comparison report</html>")
    bad_data = tmp_path / "prefs.jsonl"  # readable, but no row has an image that exists: training fails
    bad_data.write_text(json.dumps({"prompt": "Describe.", "chosen": "A cat.", "rejected": "A dog.",
                                    "image": "missing.png"}) + "\n")
    r = CliRunner().invoke(main, ["train-and-eval", "--method", "dpo", "--data", str(bad_data), "--tasks", "pope",
                                  "--limit", "2", "--task-option", "pope.max_new_tokens=2",
                                  "--output-dir", str(out), "--set", "max_steps=1"])
    assert r.exit_code == 2 and "training failed" in r.output, r.output
    assert str(bad_data) in r.output and "missing.png" in r.output
    assert (out / "report.html").read_text() == "<html>the good comparison report</html>"
    assert "report-failed.html" in r.output and (out / "report-failed.html").is_file()


# -- bounded stored text -------------------------------------------------------------------------------------
def test_cap_record_marks_and_keeps_lengths():
    rec = {"id": "1", "image": "x" * 50, "response": "a" * 30, "judge_text": "b" * 12, "n": 3}
    out = cap_record(rec, 10)
    assert out["response"] == "a" * 10 and out["judge_text"] == "b" * 10 and out["image"] == "x" * 50
    assert out["truncated"] is True and out["original_length"] == {"response": 30, "judge_text": 12}
    assert cap_record(rec, 0) is rec and cap_record({"id": "1", "response": "short"}, 10) == {"id": "1",
                                                                                              "response": "short"}


def test_huge_answers_and_judge_replies_are_capped(tmp_path):
    server = JudgeServer(plan=lambda i: "huge")  # 300 kB replies, to the model and the judge alike
    try:
        out = tmp_path / "run"
        r = CliRunner().invoke(main, ["eval", "--tasks", "mmhal", "--world", "default", "--model", f"openai:vlm@{server.url}",
                                      "--judge", f"openai:judge@{server.url}", "--output-dir", str(out),
                                      "--task-option", "mmhal.n=3", "--task-option", "mmhal.judge_cache=off",
                                      "--max-stored-chars", "2000"])
        assert r.exit_code == 0, r.output
    finally:
        server.close()
    recs = read_records(out / "samples" / "mmhal.jsonl")
    assert all(r["truncated"] and r["original_length"]["response"] > 300_000 for r in recs)
    assert all(len(r["response"]) == 2000 and len(r["judge_text"]) == 2000 for r in recs)
    assert all(r["rating"] == 4 for r in recs)  # scored on the full reply, stored cut
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 400_000, size  # 6 replies of 300 kB would be 1.8 MB
    html = (out / "report.html").read_text()
    assert "truncated" in html


# -- pickle-free training resume ---------------------------------------------------------------------------
class _Plant:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.slow
def test_resume_never_unpickles_a_planted_file(tmp_path):
    from halbench.training import dpo
    from tests.test_training_fixtures import cfg_kwargs, make_images, pair_rows, write_jsonl
    from halbench.testing.tiny import make_tiny_llava

    model = make_tiny_llava(tmp_path / "m", seed=0)
    data = write_jsonl(tmp_path / "d" / "pairs.jsonl", pair_rows(make_images(tmp_path / "d", 4), 4))
    kw = cfg_kwargs(model, data, tmp_path / "out", max_steps=2, save_steps=1)

    def crash(step):
        if step == 2:
            raise RuntimeError("simulated crash")
    with pytest.raises(RuntimeError):
        dpo.train(dpo.Config(**kw), callbacks=[crash])
    state = tmp_path / "out" / "train" / "checkpoints" / "checkpoint-1" / "training_state"
    assert (state / "scheduler.json").is_file() and not list(state.glob("custom_checkpoint_*.pkl"))
    marker = tmp_path / "PWNED"
    import torch

    torch.save(_Plant(marker), state / "custom_checkpoint_0.pkl")
    with open(state / "custom_checkpoint_1.pkl", "wb") as f:
        pickle.dump(_Plant(marker), f)
    final = dpo.train(dpo.Config(**kw))
    assert not marker.exists() and (Path(final) / "model.safetensors").is_file()

    # a random-state file that is not plain tensors is refused, not silently skipped
    with pytest.raises(RuntimeError):
        dpo.train(dpo.Config(**{**kw, "output_dir": str(tmp_path / "out2")}), callbacks=[crash])
    state2 = tmp_path / "out2" / "train" / "checkpoints" / "checkpoint-1" / "training_state"
    torch.save(_Plant(marker), state2 / "random_states_0.pkl")
    with pytest.raises(HalbenchError, match="refusing to load training state"):
        dpo.train(dpo.Config(**{**kw, "output_dir": str(tmp_path / "out2")}))
    assert not marker.exists()


def test_report_draws_megabyte_texts_lazily_in_chromium(tmp_path):
    """Two 1 MB answers (a run written before the cap, or --max-stored-chars 0) and a 1 MB judge reply: the
    page draws 2,000 characters of each with a "show all" button; clicking it draws the whole text."""
    from tests.test_report_browser import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.skip("headless Chromium not found")
    from halbench.reports import synthetic, write_report

    recs = synthetic.mmhal_records(6, 3.0, 0, [])
    recs[0]["response"] = "word " * 200_000
    recs[1]["response"] = "other " * 170_000
    recs[2]["judge_text"] = "Rating: 3 " * 100_000
    recs[3].update(response="x" * 20_000, truncated=True, original_length={"response": 1_048_576})
    run = synthetic.write_run(tmp_path / "run", {"mmhal": ("mmhal", recs)}, model_id="m", fingerprint="f")
    page = write_report([run], tmp_path / "report.html")
    b = Browser(str(tmp_path / "profile"))
    try:
        start = time.monotonic()
        b.open(page, timeout=60)
        assert time.monotonic() - start < 30
        assert b.eval("document.querySelectorAll('button.show-all').length") >= 4
        longest = "Math.max(...Array.from(document.querySelectorAll('td div'), d => d.textContent.length))"
        assert b.eval(longest) < 10_000  # nothing huge drawn up front
        assert "truncated when stored" in b.eval("document.body.textContent")
        assert "1,048,576" in b.eval("document.body.textContent")
        b.eval("Array.from(document.querySelectorAll('button.show-all')).find(x => x.textContent.includes('1,000,000')).click()")
        assert b.eval(longest) >= 1_000_000
        assert b.errors() == []
    finally:
        b.close()
