"""Report scale benchmark: two runs x N samples per task -> build + render time and file size.

    python benchmarks/bench_report.py                 # N=10000, tasks pope,chair,mmhal, 300 thumbnails
    python benchmarks/bench_report.py --n 2000 --json out.json

Synthetic runs (halbench.reports.synthetic) follow the run-directory layout; CHAIR captions are padded to
about 60 words (a detailed-description length). Prints one summary line (wall and CPU seconds: on a
shared machine CPU time is the steadier figure); --json also writes the figures.
No peer ships a comparison report, so there is no side-by-side ratio here: the figures are absolute.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from halbench.reports import build, render, synthetic
from halbench.runs import atomic_write_text


def run(n: int, tasks: list[str], n_images: int, n_boot: int, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        t0 = time.perf_counter()
        base, trained = synthetic.paired_runs(root, n=n, n_images=n_images, tasks=tuple(tasks), filler=6)
        synthetic.write_training(root / "train", steps=2000)
        t_make = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        data = build([base, trained], root / "train", n_boot=n_boot)
        t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        html = render(data)
        t_render, c_render = time.perf_counter() - t0, time.process_time() - c0
        out = root / "report.html"
        atomic_write_text(out, html)
        size = out.stat().st_size
    rows = sum(v.n_rows for t in data.tasks for v in t.views)
    return {"n_per_task": n, "tasks": tasks, "runs": 2, "per_sample_rows": rows, "thumbnails": len(data.thumbs),
            "n_boot": n_boot, "make_s": round(t_make, 2), "build_s": round(t_build, 2),
            "render_s": round(t_render, 2), "total_s": round(t_build + t_render, 2),
            "cpu_s": round(c_build + c_render, 2), "size_mb": round(size / 2**20, 2),
            "python": platform.python_version(), "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="samples per task per run")
    ap.add_argument("--tasks", default="pope,chair,mmhal")
    ap.add_argument("--images", type=int, default=500, help="distinct images the samples cycle through")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--keep", type=Path, help="write the runs and report here instead of a temp dir")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    res = run(args.n, args.tasks.split(","), args.images, args.boot, args.keep)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(f"bench_report: 2 runs x {res['n_per_task']} samples x {len(res['tasks'])} tasks "
          f"({res['per_sample_rows']} rows, {res['thumbnails']} thumbnails): build {res['build_s']:.2f} s + "
          f"render {res['render_s']:.2f} s = {res['total_s']:.2f} s wall ({res['cpu_s']:.2f} s CPU), "
          f"{res['size_mb']:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
