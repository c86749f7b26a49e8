"""End to end: `halbench eval` vs lmms-eval itself on POPE + CHAIR captions, same model, same prompts, greedy.

lmms-eval runs as its users run it (`python -m lmms_eval --model llava_hf ...`), installed in its own venv by
`bash benchmarks/setup_lmms_eval.sh` (see that script for the CPU-only changes: no torchvision, decord,
filelock<4); offline it reads local task YAMLs (benchmarks/lmms_eval_tasks.py) holding halbench's own samples
and prompts. The model is the embedded world's tiny LLaVA (an HF checkpoint dir) on CPU, one torch thread
(`OMP_NUM_THREADS=1`) for every contender, fp32.

Contenders, each a fresh process writing a fresh output dir, from start-up to metrics on disk:
  lmms_eval_bs1     python -m lmms_eval --model llava_hf --model_args pretrained=DIR,device_map=cpu,...
                    --batch_size 1 --log_samples (llava_hf asserts batch_size_per_gpu == 1)
  halbench_bsB      python -m halbench eval --tasks pope,chair --batch-size B --no-report (the HTML report is
                    work lmms-eval does not do)
  halbench_bsB_prefix_cache  (--prefix-cache-row) the same with --prefix-cache: NOT the same work (the image
                    features and image-prefix KV are computed once per image), same outputs
Timed: wall time and the child's CPU time (user + sys, from getrusage(RUSAGE_CHILDREN)), round-robin
repeats, median. Every caption and POPE answer is asserted identical across contenders (stripped: lmms-eval
keeps the leading space the tokenizer decodes), and the CHAIR metrics equal (both sides score with halbench's
CHAIR scorer: lmms-eval has no CHAIR task). With --sizes N1,N2 the marginal cost per sample pair
(T(N2) - T(N1)) / (N2 - N1) is reported too: start-up (imports, model load) cancels out, which isolates the
per-record overhead of each loop.

    bash benchmarks/setup_lmms_eval.sh          # once
    python benchmarks/bench_lmms_eval.py        # --limit 200: 200 POPE questions + 200 CHAIR captions
    python benchmarks/bench_lmms_eval.py --sizes 100,200 --repeats 2
If lmms-eval is not installed (LMMS_EVAL_PYTHON or .venv-lmms/bin/python), the script prints why and exits 0
with a SUMMARY line saying it skipped.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import REPO, ratio
from lmms_eval_tasks import write_tasks


def lmms_python() -> tuple[Path | None, str]:
    """The lmms-eval venv's python, or None and the reason it cannot be used."""
    py = Path(os.environ.get("LMMS_EVAL_PYTHON", REPO / ".venv-lmms" / "bin" / "python"))
    if not py.is_file():
        return None, f"{py} not found: run `bash benchmarks/setup_lmms_eval.sh` (or set LMMS_EVAL_PYTHON)"
    proc = subprocess.run([str(py), "-c", "import lmms_eval, importlib.metadata as m; print(m.version('lmms-eval'))"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"`import lmms_eval` fails in {py}: {proc.stderr.strip().splitlines()[-1:]}"
    return py, proc.stdout.strip()


def child_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    nltk = REPO.parent / "shared" / "nltk_data"
    if "NLTK_DATA" not in env and nltk.is_dir():
        env["NLTK_DATA"] = str(nltk)
    return env


def timed_run(cmd: list[str], cwd: Path, log: Path) -> dict[str, float]:
    """Run a child to completion; its wall and CPU (user+sys) seconds. A failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, env=child_env(), stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed (rc={proc.returncode}); log {log}:\n"
                         + log.read_text()[-3000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def lmms_cmd(py: Path, model: Path, include: Path, out: Path) -> list[str]:
    return [str(py), "-m", "lmms_eval", "--model", "llava_hf",
            "--model_args", f"pretrained={model},device_map=cpu,device=cpu,dtype=float32",
            "--tasks", "halbench_pope,halbench_chair", "--include_path", str(include),
            "--batch_size", "1", "--output_path", str(out), "--log_samples"]


def halbench_cmd(model: Path, world: Path, n: int, bs: int, out: Path, prefix_cache: bool = False) -> list[str]:
    return [sys.executable, "-m", "halbench", "eval", "--model", str(model), "--world", str(world),
            "--tasks", "pope,chair", "--limit", str(n), "--batch-size", str(bs), "--threads", "1",
            "--no-report", "--output-dir", str(out)] + (["--prefix-cache"] if prefix_cache else [])


def lmms_outputs(out: Path, include: Path) -> dict[str, dict[str, str]]:
    """{task: {sample id: response text}} from lmms-eval's --log_samples files."""
    got: dict[str, dict[str, str]] = {}
    for task, data in (("pope", "pope.jsonl"), ("chair", "chair.jsonl")):
        ids = [json.loads(line)["id"] for line in (include / data).read_text().splitlines()]
        (f,) = out.glob(f"*/*_samples_halbench_{task}.jsonl")
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        got[task] = {ids[r["doc_id"]]: r["resps"].strip() for r in rows}
    return got


def lmms_metrics(out: Path) -> dict[str, float]:
    (f,) = out.glob("*/*_results.json")
    res = json.loads(f.read_text())["results"]
    return {"chair_s": res["halbench_chair"]["chair_s,none"], "chair_i": res["halbench_chair"]["chair_i,none"],
            "pope_accuracy": res["halbench_pope"]["pope_accuracy,none"]}


def halbench_outputs(out: Path) -> dict[str, dict[str, str]]:
    from halbench.runs import read_records

    return {t: {r["id"]: (r["response"] or "").strip() for r in read_records(out / "samples" / f"{t}.jsonl")}
            for t in ("pope", "chair")}


def halbench_metrics(out: Path) -> dict[str, float]:
    res = json.loads((out / "results.json").read_text())["tasks"]
    return {"chair_s": res["chair"]["metrics"]["chair_s"], "chair_i": res["chair"]["metrics"]["chair_i"],
            "pope_accuracy": res["pope"]["metrics"].get("accuracy")}


def prepare(n_max: int) -> tuple[Path, Path, dict[str, tuple]]:
    """The model dir, the world root and {task: (Task, samples)} for POPE and CHAIR."""
    from halbench.registry import make_task
    from halbench.world import default_world

    world = default_world()
    pope, chair = make_task("pope", {}), make_task("chair", {})
    pope_s, chair_s = pope.samples(), chair.samples()
    if n_max > min(len(pope_s), len(chair_s)):
        raise SystemExit(f"--limit {n_max} > the world's {len(pope_s)} POPE / {len(chair_s)} CHAIR samples")
    return Path(world.vlm_dir), Path(world.root), {"pope": (pope, pope_s), "chair": (chair, chair_s)}


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=200, help="POPE questions and CHAIR captions each (halbench --limit).")
    p.add_argument("--sizes", default=None, help="N1,N2: also report the marginal cost per sample (slope).")
    p.add_argument("--batch-sizes", default="1,8", help="halbench batch sizes to run.")
    p.add_argument("--prefix-cache-row", action="store_true",
                   help="Also run halbench at the largest batch size with --prefix-cache (image features + image "
                        "prefix KV computed once per image: identical outputs, less compute than lmms-eval does).")
    args = p.parse_args(argv)
    common.setup(args)
    if args.smoke:
        args.limit, args.sizes, args.batch_sizes = 4, None, "1,4"
    py, version = lmms_python()
    if py is None:
        print(f"SKIP: {version}")
        common.summary("bench_lmms_eval", f"skipped: {version}", {"skipped": version}, args)
        return
    sizes = sorted({int(x) for x in args.sizes.split(",")}) if args.sizes else [args.limit]
    bss = [int(b) for b in args.batch_sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench_lmms_"))
    try:
        model, world, tasks = prepare(max(sizes))
        (pope, pope_s), (chair, chair_s) = tasks["pope"], tasks["chair"]
        include = {n: write_tasks(tmp / f"tasks{n}", pope, pope_s[:n], chair, chair_s[:n]) for n in sizes}
        contenders = {"lmms_eval_bs1": None, **{f"halbench_bs{b}": b for b in bss}}
        if args.prefix_cache_row:
            contenders[f"halbench_bs{max(bss)}_prefix_cache"] = -max(bss)  # negative: with --prefix-cache
        times: dict[tuple[str, int], list[dict]] = {}
        outputs: dict[tuple[str, int], tuple] = {}
        for rep in range(args.repeats):
            for n in sizes:
                for name, bs in contenders.items():
                    out = tmp / f"{name}_n{n}_r{rep}"
                    log = tmp / f"{name}_n{n}_r{rep}.log"
                    cmd = (lmms_cmd(py, model, include[n], out) if bs is None
                           else halbench_cmd(model, world, n, abs(bs), out, prefix_cache=bs < 0))
                    t = timed_run(cmd, tmp, log)
                    times.setdefault((name, n), []).append(t)
                    outputs[(name, n)] = ((lmms_outputs(out, include[n]), lmms_metrics(out)) if bs is None
                                          else (halbench_outputs(out), halbench_metrics(out)))
                    print(f"  rep {rep} n={n} {name:<14} wall {t['wall_s']:7.2f}s  cpu {t['cpu_s']:7.2f}s", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
        figures = report(times, outputs, contenders, sizes, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sizes[-1]
    best = f"halbench_bs{max(bss)}"
    common.summary("bench_lmms_eval",
                   f"POPE+CHAIR, {n}+{n} samples, outputs identical: {best} x{figures['rows'][best]['cpu_ratio']:.2f} "
                   f"CPU / x{figures['rows'][best]['wall_ratio']:.2f} wall vs lmms-eval {version} (bs1); halbench_bs1 "
                   f"x{figures['rows']['halbench_bs1']['cpu_ratio']:.2f} CPU", figures, args)


def check_identical(outputs: dict, sizes: list[int]) -> None:
    for n in sizes:
        ref_out, ref_metrics = outputs[("lmms_eval_bs1", n)]
        for (name, m), (out, metrics) in outputs.items():
            if m != n:
                continue
            for task in ("pope", "chair"):
                if out[task] != ref_out[task]:
                    diff = [k for k in ref_out[task] if out[task].get(k) != ref_out[task][k]]
                    raise SystemExit(f"{name} n={n}: {len(diff)} {task} outputs differ from lmms-eval's, e.g. "
                                     f"{diff[0]!r}: {out[task].get(diff[0])!r} vs {ref_out[task][diff[0]]!r}")
            for k in ("chair_s", "chair_i"):
                if abs(metrics[k] - ref_metrics[k]) > 1e-12:
                    raise SystemExit(f"{name} n={n}: {k} {metrics[k]} != lmms-eval's {ref_metrics[k]}")


def report(times: dict, outputs: dict, contenders: dict, sizes: list[int], version: str) -> dict:
    check_identical(outputs, sizes)
    med = {k: {m: statistics.median(t[m] for t in v) for m in ("wall_s", "cpu_s")} for k, v in times.items()}
    n = sizes[-1]
    ref = med[("lmms_eval_bs1", n)]
    rows = {}
    for name in contenders:
        m = med[(name, n)]
        rows[name] = {**m, "wall_ratio": ratio(ref["wall_s"], m["wall_s"]),
                      "cpu_ratio": ratio(ref["cpu_s"], m["cpu_s"]),
                      "repeats": times[(name, n)]}
        if len(sizes) > 1:
            lo = med[(name, sizes[0])]
            rows[name]["marginal_cpu_s_per_pair"] = (m["cpu_s"] - lo["cpu_s"]) / (n - sizes[0])
            rows[name]["marginal_wall_s_per_pair"] = (m["wall_s"] - lo["wall_s"]) / (n - sizes[0])
    print(f"\nlmms-eval {version}; {n} POPE + {n} CHAIR samples; every output identical; CHAIR metrics equal "
          f"(chair_s {outputs[('lmms_eval_bs1', n)][1]['chair_s']:.4f})")
    for name, r in rows.items():
        extra = (f"  marginal {1000 * r['marginal_cpu_s_per_pair']:.1f} ms CPU/pair" if "marginal_cpu_s_per_pair" in r
                 else "")
        print(f"  {name:<14} wall {r['wall_s']:7.2f}s (x{r['wall_ratio']:.2f})  cpu {r['cpu_s']:7.2f}s "
              f"(x{r['cpu_ratio']:.2f}){extra}")
    return {"lmms_eval_version": version, "sizes": sizes, "rows": rows,
            "metrics": {name: outputs[(name, n)][1] for name in contenders}}


if __name__ == "__main__":
    main()
