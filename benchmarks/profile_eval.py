"""Where the CPU time of one `halbench eval` run goes: start-up, model load, task preparation (CHAIR's NLTK
WordNet + tagger), generation, input building, scoring, writing, aggregation.

Runs `halbench eval` in this process (no profiler overhead: each instrumented callable is wrapped with a
process-CPU-time accumulator, exclusive of nested instrumented calls, via common.Profiler-style stacks) and
prints each part's share of the process's CPU time from interpreter start.

    python benchmarks/profile_eval.py --limit 300 --batch-size 8          # POPE + CHAIR, the world's data
    python benchmarks/profile_eval.py --limit 300 --batch-size 1 --tasks pope
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def process_cpu() -> float:
    """CPU seconds of this process since it started (user + sys), imports included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CpuProfiler:
    """Exclusive process-CPU time per label of patched callables (nested labels charged to the innermost)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []

    def patch(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a, **k):
            frame = [time.process_time(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*a, **k)
            finally:
                self._stack.pop()
                inclusive = time.process_time() - frame[0]
                self.totals[label] = self.totals.get(label, 0.0) + inclusive - frame[1]
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._stack:
                    self._stack[-1][1] += inclusive

        setattr(owner, attr, timed)


def instrument(prof: CpuProfiler) -> None:
    import halbench.evaluator as ev
    import halbench.models as models
    from halbench.models.hf import HFModel
    from halbench.runs import RecordWriter
    from halbench.tasks.chair import ChairTask
    from halbench.tasks.pope import PopeTask

    prof.patch(models, "load_model", "model load (weights, processor)")  # run_eval imports it at call time
    for task in (ChairTask, PopeTask):
        prof.patch(task, "prepare", "task prepare (CHAIR: NLTK WordNet + tagger)")
        prof.patch(task, "samples", "task samples (read + validate data)")
        prof.patch(task, "score_batch", "scoring")
        prof.patch(task, "aggregate", "aggregate")
    prof.patch(HFModel, "build_inputs", "input building (images, processor)")
    prof.patch(HFModel, "_encode", "input building (images, processor)")
    prof.patch(HFModel, "generate", "generation (HF generate)")
    prof.patch(RecordWriter, "write", "record writing")
    prof.patch(RecordWriter, "commit", "record writing")
    prof.patch(ev, "_compact", "compaction + results")
    prof.patch(ev, "evaluate", "evaluator (other)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tasks", default="pope,chair")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    start = process_cpu()  # interpreter start-up before this line is in "imports + CLI"
    from halbench.world import default_world

    prof = CpuProfiler()
    instrument(prof)
    from halbench.cli import main as cli_main

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["eval", "--world", str(default_world().root), "--tasks", a.tasks, "--limit", str(a.limit),
                "--batch-size", str(a.batch_size), "--threads", "1", "--no-report", "--output-dir", tmp + "/run",
                "--overwrite"]
        try:
            cli_main(argv, standalone_mode=False)
        except SystemExit as e:  # click may still exit
            if e.code:
                raise
    total = process_cpu()
    rest = total - sum(prof.totals.values())
    rows = dict(sorted(prof.totals.items(), key=lambda kv: -kv[1]))
    rows["imports + CLI + other"] = rest
    print(f"halbench eval --tasks {a.tasks} --limit {a.limit} --batch-size {a.batch_size}: {total:.2f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f}; {start:.2f} s before the first line of this script)")
    for k, v in rows.items():
        print(f"  {k:<46} {v:7.2f} s  {100 * v / total:5.1f}%  ({prof.calls.get(k, '-')} calls)")
    if a.json:
        a.json.write_text(json.dumps({"total_cpu_s": total, "parts": rows, "args": vars(a) | {"json": str(a.json)},
                                      "load_avg_1m": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
