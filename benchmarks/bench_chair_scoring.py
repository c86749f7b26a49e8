"""CHAIR scoring, files to metrics: halbench's ChairScorer vs the official OPERA chair.py as written, on the NLTK
installed here, warm and cold, on OPERA's 12 released caption files (6,000 captions).

The official script (shikiw/OPERA chair.py, itself "copied from LisaAnne/Hallucination utils/chair.py"; the
upstream has no licence, so it is not shipped in this repo) is read from the path in $HALBENCH_CHAIR_OFFICIAL
(e.g. `git show 61426ef:chair.py` of shikiw/OPERA); without it the script prints why and exits 0. Its evaluator
is built the way its `--cache chair.pkl` flow loads it: a pickled `CHAIR` object holding the GT object sets of
all 123,287 COCO train+val images (../shared/refdata/chair/gt, dumped from the official object) and its
synonym tables (chair_vocab_from_official_cache.json).

Contenders, each from a caption file on disk to CHAIRs / CHAIRi / Recall:
  official_warm    evaluator in memory, `compute_chair(file, "image_id", "caption")` per file: reads the file,
                   nltk.word_tokenize + nltk.pos_tag (NLTK >= 3.9 caches the tagger: no reload per caption) +
                   a new WordNetLemmatizer per caption, `set(self.mscoco_objects)` per word - as written
  halbench_warm    per pass a new ChairScorer (pipeline opera) and an empty lemma cache (NLTK data loaded once,
                   like the official's), per file: read the JSONL, score_caption per caption, chair_metrics
                   (records also carry words, spans, mention lists). Without the reset, repeats would hit the
                   scorer's per-caption cache and measure nothing (x240 "faster")
  official_cold / halbench_cold   a fresh process per file, as users run them: `python chair.py --cap_file F
                   --cache chair.pkl` vs `halbench score chair --predictions F --gt GT --json`; imports, NLTK
                   data, GT loading included (child CPU time from getrusage)
Only if NLTK's punkt_tab model is missing (it is on these offline machines: it cannot be downloaded) is the
official `nltk.word_tokenize` replaced by halbench's punkt-free equivalent (sentence split + Treebank tokens,
`halbench.tasks.chair_text.word_tokenize`); the JSON records `official_tokenizer` so a run says which.
All times are process CPU time, one thread; warm figures are medians over round-robin repeats.

    HALBENCH_CHAIR_OFFICIAL=/path/to/chair.py python benchmarks/bench_chair_scoring.py [--files 12] [--cold 2]
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import REPO, interleaved, ratio

REFDATA = REPO.parent / "shared" / "refdata" / "chair"
GT_PART1 = REFDATA / "gt" / "coco2014_trainval_gt_objects_opera_style_part1of2.json"
# The official module's word_tokenize swapped for halbench's when punkt_tab is absent (see module docstring).
SHIM = """
import nltk
try:
    nltk.data.find("tokenizers/punkt_tab/english/")
except LookupError:
    from halbench.tasks.chair_text import word_tokenize
    nltk.word_tokenize = lambda text, *a, **k: word_tokenize(text)
"""


def official_tokenizer() -> str:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return "nltk.word_tokenize (punkt_tab)"
    except LookupError:
        exec(SHIM, {})
        return "halbench.tasks.chair_text.word_tokenize (punkt_tab not installed)"


def load_official(path: Path):
    """The official module's namespace; its CHAIR class made picklable as __main__.CHAIR (as its cache is)."""
    ns: dict = {"__name__": "chair_official", "__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    ns["CHAIR"].__module__ = "__main__"
    return ns


def official_evaluator(ns: dict):
    """A CHAIR object with the state `CHAIR(coco_path)` builds, from the dumped official tables and GT."""
    from halbench.tasks.chair import load_gt

    ev = ns["CHAIR"].__new__(ns["CHAIR"])
    vocab = json.loads((REFDATA / "chair_vocab_from_official_cache.json").read_text())
    ev.mscoco_objects, ev.inverse_synonym_dict = vocab["mscoco_objects"], vocab["inverse_synonym_dict"]
    ev.double_word_dict, ev.coco_path = vocab["double_word_dict"], "coco_annotations"
    ev.imid_to_objects = {int(k): set(v) for k, v in load_gt(GT_PART1).items()}
    return ev


def halbench_file(scorer, gt, path: Path) -> dict:
    from halbench.tasks.chair import chair_metrics

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return chair_metrics([scorer.score_caption(r["caption"], gt[r["image_id"]]) for r in rows])


def halbench_pass(gt, files: list[Path]) -> list[dict]:
    """One warm pass: NLTK's data loaded (as the official evaluator's is), but a new ChairScorer and an empty
    lemma cache, so no result of an earlier pass is reused (ChairScorer caches per caption text, the shared
    lemmatizer per (word, POS): within a pass both work as in a real run)."""
    from halbench.tasks.chair import ChairScorer
    from halbench.tasks.chair_text import opera_lemmatizer

    opera_lemmatizer()._cache.clear()
    scorer = ChairScorer("coco2018", "opera")
    return [halbench_file(scorer, gt, f) for f in files]


def child_cpu(cmd: list[str], env: dict) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_runs(official: Path, cache: Path, files: list[Path], repeats: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    runner = SHIM + ("import runpy, sys\npath = sys.argv[1]\nsys.argv = [path] + sys.argv[2:]\n"
                     "runpy.run_path(path, run_name='__main__')\n")
    out: dict[str, list[float]] = {"official_cold": [], "halbench_cold": []}
    for _ in range(repeats):
        for f in files:
            out["official_cold"].append(child_cpu(
                [sys.executable, "-c", runner, str(official),
                 "--cap_file", str(f), "--cache", str(cache)], env))
            out["halbench_cold"].append(child_cpu(
                [sys.executable, "-m", "halbench", "score", "chair", "--predictions", str(f), "--gt", str(GT_PART1),
                 "--variant", "opera", "--json"], env))
    return out


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=12, help="How many of the 12 OPERA caption files to score.")
    p.add_argument("--cold", type=int, default=1, help="Cold (fresh-process) runs per file and side (0: skip).")
    args = p.parse_args(argv)
    common.setup(args)
    if args.smoke:
        args.files, args.cold = 1, 0
    official = os.environ.get("HALBENCH_CHAIR_OFFICIAL")
    files = sorted((REFDATA / "opera_chair_eval_results").glob("*/*.jsonl"))[: args.files]
    reason = (None if official and Path(official).is_file() else
              f"set HALBENCH_CHAIR_OFFICIAL to the official chair.py (got {official!r})")
    if reason is None and not files:
        reason = f"no OPERA caption files under {REFDATA}"
    if reason:
        print(f"SKIP: {reason}")
        common.summary("bench_chair_scoring", f"skipped: {reason}", {"skipped": reason}, args)
        return
    from halbench.tasks.chair import ChairScorer, load_gt

    tokenizer = official_tokenizer()
    ns = load_official(Path(official))
    t0 = time.process_time()
    evaluator = official_evaluator(ns)
    ChairScorer("coco2018", "opera")  # loads NLTK data once (the official evaluator holds it loaded too)
    gt = load_gt(GT_PART1)
    setup_cpu = time.process_time() - t0
    n = sum(len(f.read_text().splitlines()) for f in files)
    timings, results = interleaved({
        "official_warm": lambda: [evaluator.compute_chair(str(f), "image_id", "caption")["overall_metrics"]
                                  for f in files],
        "halbench_warm": lambda: halbench_pass(gt, files),
    }, warmup=args.warmup, repeats=args.repeats)
    parity = [{"file": f"{f.parent.name}/{f.name}", "official": o, "halbench": {
        "CHAIRs": h["chair_s"], "CHAIRi": h["chair_i"], "Recall": h["recall"]}}
        for f, o, h in zip(files, results["official_warm"], results["halbench_warm"])]
    cold = {}
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "chair.pkl"
            sys.modules["__main__"].CHAIR = ns["CHAIR"]  # pickled as the script's own cache holds it
            cache.write_bytes(pickle.dumps(evaluator))
            cold = cold_runs(Path(official), cache, files, args.cold)
    report(timings, cold, parity, n, len(files), tokenizer, setup_cpu, args)


def report(timings, cold, parity, n, n_files, tokenizer, setup_cpu, args) -> None:
    import statistics

    warm = {k: t.cpu_median for k, t in timings.items()}
    rows = {k: {"cpu_s": v, "captions_per_cpu_s": n / v, **timings[k].as_dict()} for k, v in warm.items()}
    for k, v in cold.items():
        rows[k] = {"cpu_s_per_file": statistics.median(v), "runs": v}
    warm_ratio = ratio(warm["official_warm"], warm["halbench_warm"])
    print(f"\n{n} captions in {n_files} files; official tokenizer: {tokenizer}; "
          f"setup (GT, tables) {setup_cpu:.1f}s CPU")
    for p in parity:
        o, h = p["official"], p["halbench"]
        print(f"  {p['file']:<24} official CHAIRs {100 * o['CHAIRs']:5.1f} CHAIRi {100 * o['CHAIRi']:5.1f}   "
              f"halbench {100 * h['CHAIRs']:5.1f} {100 * h['CHAIRi']:5.1f}")
    print(f"  warm: official {warm['official_warm']:.2f}s, halbench {warm['halbench_warm']:.2f}s CPU: halbench "
          f"x{warm_ratio:.2f} faster")
    text = f"warm x{warm_ratio:.2f} vs official chair.py ({n} captions, CPU time)"
    if cold:
        cold_ratio = ratio(rows["official_cold"]["cpu_s_per_file"], rows["halbench_cold"]["cpu_s_per_file"])
        print(f"  cold, per file (fresh process): official {rows['official_cold']['cpu_s_per_file']:.2f}s, halbench "
              f"{rows['halbench_cold']['cpu_s_per_file']:.2f}s CPU: x{cold_ratio:.2f}")
        text += f"; cold x{cold_ratio:.2f} per file"
    common.summary("bench_chair_scoring", text + f"; official tokenizer: {tokenizer.split(' ')[0]}",
                   {"n_captions": n, "rows": rows, "parity": parity, "official_tokenizer": tokenizer,
                    "warm_ratio": warm_ratio}, args)


if __name__ == "__main__":
    main()
