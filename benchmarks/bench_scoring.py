"""POPE scoring throughput (answers/s): halbench vs the official POPE evaluate.py flow, same answers.

CHAIR captions/s is measured by benchmarks/bench_chair_scoring.py (the 6000 OPERA captions, halbench's
ChairScorer vs the official chair.py); this script does not duplicate it.

Data: the official COCO POPE question files (3 splits x 3000; ../shared/refdata/pope, or the 20-row copies in
tests/data/pope with --smoke), answered with the 46 reference answer strings of answer_parsing_cases.jsonl
in turn ("Yes", "No, there is not.", "There is a dog.", ...), so every parsing branch is exercised.

Contenders, each from answer strings + question files to the five POPE metrics per split:
  official_evaluate_py   RUCAIBox/POPE evaluate.py (= LLaVA eval_pope.py): per split, read the answer and
                         label files, first sentence / drop commas / "No", "no", "not" -> no, count TP/FP/TN/FN
                         (reproduced from its published rule; one pass per split file, as its users run it)
  halbench_score_file    `halbench score pope` path: score_answer_file (validates ids, splits, question text,
                         unanswered questions; keeps per-answer records)
  halbench_task_score    the evaluator's path: PopeTask.score per (sample, Response) + PopeTask.aggregate
The metrics of the three are asserted equal before timing is reported.

    python benchmarks/bench_scoring.py
    python benchmarks/bench_scoring.py --smoke
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import common
from common import REPO, interleaved, ratio

SHARED_POPE = REPO.parent / "shared" / "refdata" / "pope"
TEST_POPE = REPO / "tests" / "data" / "pope"
SPLITS = ("random", "popular", "adversarial")


def pope_dir(smoke: bool) -> Path:
    return TEST_POPE / "current" if smoke or not SHARED_POPE.is_dir() else SHARED_POPE


def answer_strings() -> list[str]:
    path = TEST_POPE / "answer_parsing_cases.jsonl"
    return [json.loads(line)["answer"] for line in path.read_text().splitlines() if line.strip()]


def write_answers(data: Path, tmp: Path) -> tuple[Path, dict[str, Path]]:
    """One combined predictions JSONL (halbench) and one answer file per split (official format)."""
    answers = answer_strings()
    combined, per_split, k = [], {}, 0
    for split in SPLITS:
        rows = []
        for line in (data / f"coco_pope_{split}.json").read_text().splitlines():
            if not line.strip():
                continue
            q = json.loads(line)
            text = answers[k % len(answers)]
            k += 1
            rows.append({"question_id": q["question_id"], "question": q["text"], "answer": text})
            combined.append({"question_id": q["question_id"], "split": split, "text": text})
        per_split[split] = tmp / f"answers_{split}.jsonl"
        per_split[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in combined))
    return path, per_split


def official_evaluate_py(ans_file: Path, label_file: Path) -> dict:
    """The POPE evaluate.py flow for one split (rule as published; see module docstring)."""
    answers = [json.loads(q) for q in open(ans_file)]
    labels = [json.loads(q)["label"] for q in open(label_file)]
    preds = []
    for a in answers:
        text = a["answer"]
        if text.find(".") != -1:
            text = text.split(".")[0]
        words = text.replace(",", "").split(" ")
        preds.append(0 if ("No" in words or "not" in words or "no" in words) else 1)
    gold = [0 if lab == "no" else 1 for lab in labels]
    tp = sum(p == 1 and g == 1 for p, g in zip(preds, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(preds, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(preds, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(preds, gold))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / len(gold), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": preds.count(1) / len(preds)}


def run_official(data: Path, per_split: dict[str, Path]) -> dict:
    return {s: official_evaluate_py(per_split[s], data / f"coco_pope_{s}.json") for s in SPLITS}


def run_task_path(task, samples, responses) -> dict:
    return task.aggregate([task.score(s, r) for s, r in zip(samples, responses)])


def per_split(metrics: dict) -> dict:
    return {s: {k: metrics[f"{s}/{k}"] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")}
            for s in SPLITS}


def check_same(results: dict) -> None:
    ref = results["official_evaluate_py"]
    for name in ("halbench_score_file", "halbench_task_score"):
        got = per_split(results[name])
        for s in SPLITS:
            for k, v in ref[s].items():
                if abs(got[s][k] - v) > 1e-12:
                    raise SystemExit(f"{name} {s}/{k} = {got[s][k]} but official = {v}")


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--repeats-inner", type=int, default=None, help="Scoring passes per timed repeat.")
    args = p.parse_args(argv)
    common.setup(args)
    args.repeats = max(args.repeats, 5) if not args.smoke else 1
    from halbench.schema import Response
    from halbench.tasks.pope import PopeTask, score_answer_file

    data = pope_dir(args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        preds, split_files = write_answers(data, Path(tmp))
        task = PopeTask("official", data=str(data), image_root=tmp)
        samples = task.samples()
        texts = {(r["split"], r["question_id"]): r["text"] for r in map(json.loads, preds.read_text().splitlines())}
        responses = [Response(text=texts[(s["split"], s["question_id"])]) for s in samples]
        timings, results = interleaved({
            "official_evaluate_py": lambda: run_official(data, split_files),
            "halbench_score_file": lambda: score_answer_file(preds, data=data)[0],
            "halbench_task_score": lambda: run_task_path(task, samples, responses),
        }, warmup=args.warmup, repeats=args.repeats)
    check_same(results)
    n = len(samples)
    peer = timings["official_evaluate_py"].rate(n)
    rows = {k: {"answers_per_s": t.rate(n), "ratio_vs_official": ratio(t.rate(n), peer), **t.as_dict()}
            for k, t in timings.items()}
    print(f"\n{n} answers over {len(SPLITS)} splits from {data}; metrics identical across contenders")
    for k, row in rows.items():
        print(f"  {k:<22} {row['answers_per_s']:>12,.0f} answers/s   x{row['ratio_vs_official']:.2f} vs official")
    common.summary(
        "bench_scoring",
        f"POPE answers/s: score-file x{rows['halbench_score_file']['ratio_vs_official']:.2f}, task path "
        f"x{rows['halbench_task_score']['ratio_vs_official']:.2f} of the official evaluate.py flow "
        f"({rows['halbench_task_score']['answers_per_s']:,.0f}/s); CHAIR: see bench_chair_scoring.py",
        {"n_answers": n, "data": str(data), "rows": rows}, args)


if __name__ == "__main__":
    main()
