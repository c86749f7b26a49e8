"""Local lmms-eval task folders (YAML + utils.py + JSONL data) that ask exactly what halbench's POPE and CHAIR
tasks ask, for benchmarks/bench_lmms_eval.py.

Offline, lmms-eval cannot download its `lmms-lab/POPE` dataset, so its users point `--include_path` at a local
task YAML; this writes one per task from halbench's own samples and requests:
  - POPE: lmms-eval's own `tasks/pope/pope.yaml` with the dataset swapped for a local JSON file, its metrics
    (`lmms_eval.tasks.pope.utils.pope_process_results` + the five aggregations) unchanged, the prompt =
    halbench's request prompt (lmms-eval's default post-prompt "\\nAnswer the question using a single word or
    phrase." is set to "" so both sides send the same text), max_new_tokens = halbench's (16).
  - CHAIR captions: lmms-eval has no CHAIR task; the local task sends halbench's prompt with halbench's
    max_new_tokens and scores each caption in `process_results` with the same scorer halbench's CHAIR task uses
    (`ChairTask.score`), aggregated with `chair_metrics`: the scoring work is the same on both sides.
Images are read from their files in `doc_to_visual` (lmms-eval's POPE reads a decoded image column instead).
"""

from __future__ import annotations

import json
from pathlib import Path

POPE_YAML = """\
task: halbench_pope
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.pope_process_results
metric_list:
  - metric: pope_accuracy
    aggregation: !function utils.pope_aggregate_accuracy
    higher_is_better: true
  - metric: pope_precision
    aggregation: !function utils.pope_aggregate_precision
    higher_is_better: true
  - metric: pope_recall
    aggregation: !function utils.pope_aggregate_recall
    higher_is_better: true
  - metric: pope_f1_score
    aggregation: !function utils.pope_aggregate_f1_score
    higher_is_better: true
  - metric: pope_yes_ratio
    aggregation: !function utils.pope_aggregate_yes_ratio
    higher_is_better: true
metadata:
  - version: 0.0
"""

CHAIR_YAML = """\
task: halbench_chair
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: "image_id"
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.chair_process_results
metric_list:
  - metric: chair_s
    aggregation: !function utils.chair_aggregate_s
    higher_is_better: false
  - metric: chair_i
    aggregation: !function utils.chair_aggregate_i
    higher_is_better: false
metadata:
  - version: 0.0
"""

UTILS = '''\
"""doc_to_visual / doc_to_text for the local halbench_pope and halbench_chair tasks (written by
benchmarks/lmms_eval_tasks.py). POPE metrics are lmms-eval's own functions."""
from PIL import Image

from lmms_eval.tasks.pope.utils import (pope_aggregate_accuracy, pope_aggregate_f1_score,  # noqa: F401
                                        pope_aggregate_precision, pope_aggregate_recall,
                                        pope_aggregate_yes_ratio, pope_process_results)

_CHAIR = {{}}


def doc_to_visual(doc):
    return [Image.open(doc["image_path"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def _chair_task():
    if not _CHAIR:
        from halbench.registry import make_task
        task = make_task("chair", {chair_options!r})
        task.samples()
        _CHAIR["task"] = task
    return _CHAIR["task"]


def chair_process_results(doc, results):
    from halbench.schema import Response
    task = _chair_task()
    sample = {{"id": doc["id"], "image_id": doc["image_id"], "image": doc["image_path"]}}
    record = task.score(sample, Response(text=results[0]))
    return {{"chair_s": record, "chair_i": record}}


def _metrics(records):
    from halbench.tasks.chair import chair_metrics
    return chair_metrics(records)


def chair_aggregate_s(records):
    return _metrics(records)["chair_s"]


def chair_aggregate_i(records):
    return _metrics(records)["chair_i"]
'''


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_tasks(out_dir: Path, pope_task, pope_samples: list[dict], chair_task, chair_samples: list[dict],
                chair_options: dict | None = None) -> Path:
    """Write the two task folders under out_dir; returns out_dir (lmms-eval's --include_path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pope_rows, chair_rows = [], []
    for s in pope_samples:
        req = pope_task.request(s)
        pope_rows.append({"id": s["id"], "question_id": s["id"], "question": req.prompt, "answer": s["label"],
                          "image_path": req.image})
    for s in chair_samples:
        req = chair_task.request(s)
        chair_rows.append({"id": s["id"], "image_id": s["image_id"], "question": req.prompt, "image_path": req.image})
    _write_jsonl(out_dir / "pope.jsonl", pope_rows)
    _write_jsonl(out_dir / "chair.jsonl", chair_rows)
    pope_new = pope_task.request(pope_samples[0]).generation.max_new_tokens
    chair_new = chair_task.request(chair_samples[0]).generation.max_new_tokens
    (out_dir / "halbench_pope.yaml").write_text(POPE_YAML.format(data=out_dir / "pope.jsonl", max_new_tokens=pope_new))
    (out_dir / "halbench_chair.yaml").write_text(CHAIR_YAML.format(data=out_dir / "chair.jsonl",
                                                                    max_new_tokens=chair_new))
    (out_dir / "utils.py").write_text(UTILS.format(chair_options=dict(chair_options or {})))
    return out_dir
