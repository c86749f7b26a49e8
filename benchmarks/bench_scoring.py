"""POPE scoring throughput (answers/s): halbench vs the official POPE evaluate.py flow, same answers.

CHAIR captions/s is measured by benchmarks/bench_chair_scoring.py (the 6000 OPERA captions, halbench's
ChairScorer vs the official chair.py); this script does not duplicate it.

Data: the official COCO POPE question files (3 splits x 3000; ../shared/refdata/pope, or the 20-row copies in
tests/data/pope with --smoke), answered with the 46 reference answer strings of answer_parsing_cases.jsonl
in turn ("Yes", "No, there is not.", "There is a dog.", ...), so every parsing branch is exercised.

Contenders, same work: from files on disk to the five POPE metrics per split:
  official_evaluate_py   RUCAIBox/POPE evaluate.py (= LLaVA eval_pope.py): per split, read the answer and
                         label files, first sentence / drop commas / "No", "no", "not" -> no, count TP/FP/TN/FN
                         (reproduced from its published rule; one pass per split file, as its users run it)
  halbench_score_file    `halbench score pope` path: score_answer_file (validates ids, splits, question text,
                         unanswered questions; keeps per-answer records)
  halbench_task_files    the evaluator's path from files: PopeTask reads the question files, the responses are
                         read from a samples JSONL like the one the evaluator writes, PopeTask.score per
                         (sample, Response) + PopeTask.aggregate
Same work, in memory (answers and labels already loaded, no file read on either side):
  official_in_memory     the official parse-and-count over loaded answers + labels
  halbench_task_in_memory  PopeTask.score per (sample, Response) + aggregate (builds a record per answer: ids,
                         split, label, image id, which the official count does not)
The metrics of all of them are asserted equal before timing is reported. Ratios are on process CPU time.

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
    return official_count(answers, labels)


def official_count(answers: list[dict], labels: list[str]) -> dict:
    """evaluate.py's parse and count, on answers and labels already in memory."""
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


def run_task_files(data: Path, responses_file: Path, image_root: str) -> dict:
    """The evaluator's scoring from files: question files -> samples, samples JSONL -> responses -> metrics."""
    from halbench.runs import read_records
    from halbench.schema import Response
    from halbench.tasks.pope import PopeTask

    task = PopeTask("official", data=str(data), image_root=image_root)
    samples = task.samples()
    text = {r["id"]: r["response"] for r in read_records(responses_file)}
    return run_task_path(task, samples, [Response(text=text[str(s["id"])]) for s in samples])


def write_responses(samples: list[dict], texts: dict, path: Path) -> Path:
    """A samples JSONL with the fields the evaluator writes before scoring (id, prompt, image, response, error)."""
    path.write_text("".join(json.dumps({"id": str(s["id"]), "prompt": s["text"], "image": s.get("image_path"),
                                        "response": texts[(s["split"], s["question_id"])], "error": None}) + "\n"
                            for s in samples))
    return path


def per_split(metrics: dict) -> dict:
    return {s: {k: metrics[f"{s}/{k}"] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")}
            for s in SPLITS}


def check_same(results: dict) -> None:
    ref = results["official_evaluate_py"]
    if results["official_in_memory"] != ref:
        raise SystemExit("official_in_memory differs from official_evaluate_py")
    for name in [k for k in results if k.startswith("halbench")]:
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
        records_file = write_responses(samples, texts, Path(tmp) / "samples_pope.jsonl")
        loaded = {sp: ([json.loads(q) for q in open(split_files[sp])],
                       [json.loads(q)["label"] for q in open(data / f"coco_pope_{sp}.json")]) for sp in SPLITS}
        timings, results = interleaved({
            "official_evaluate_py": lambda: run_official(data, split_files),
            "halbench_score_file": lambda: score_answer_file(preds, data=data)[0],
            "halbench_task_files": lambda: run_task_files(data, records_file, tmp),
            "official_in_memory": lambda: {sp: official_count(*loaded[sp]) for sp in SPLITS},
            "halbench_task_in_memory": lambda: run_task_path(task, samples, responses),
        }, warmup=args.warmup, repeats=args.repeats)
    check_same(results)
    n = len(samples)
    peers = {"official_evaluate_py": timings["official_evaluate_py"].cpu_rate(n),
             "official_in_memory": timings["official_in_memory"].cpu_rate(n)}
    rows = {}
    for k, t in timings.items():
        peer = "official_in_memory" if k.endswith("in_memory") else "official_evaluate_py"
        rows[k] = {"answers_per_cpu_s": t.cpu_rate(n), "answers_per_s": t.rate(n), "peer": peer,
                   "ratio_vs_official": ratio(t.cpu_rate(n), peers[peer]), **t.as_dict()}
    print(f"\n{n} answers over {len(SPLITS)} splits from {data}; metrics identical across contenders")
    for k, row in rows.items():
        print(f"  {k:<24} {row['answers_per_cpu_s']:>12,.0f} answers/CPU-s   x{row['ratio_vs_official']:.2f} vs "
              f"{row['peer']}")
    common.summary(
        "bench_scoring",
        f"POPE, files to metrics: score-file x{rows['halbench_score_file']['ratio_vs_official']:.2f}, evaluator "
        f"path x{rows['halbench_task_files']['ratio_vs_official']:.2f} of the official evaluate.py flow; in memory: "
        f"x{rows['halbench_task_in_memory']['ratio_vs_official']:.2f} (CPU time); CHAIR: bench_chair_scoring.py",
        {"n_answers": n, "data": str(data), "rows": rows}, args)


if __name__ == "__main__":
    main()
