"""Issue 15 report features: what `halbench report` accepts, labels, seed groups, table export, comparison.json
with the length-matched control, training/data reports, and the report glitches (legend, headings, ids,
two-word classes, POPE F1 CI)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from halbench.cli import main
from halbench.errors import HalbenchError
from halbench.reports import build, render, synthetic, write_report
from halbench.reports.inputs import resolve
from halbench.reports.kinds import CHAIR
from halbench.reports.metrics import MetricTable
from halbench.reports.views import mark_caption
from halbench.tasks.chair import ChairScorer

CHAIR_TASK = {"name": "chair", "variant": "2018", "version": "1", "options": {}, "synonyms": "coco2018"}
OBJECTS = ["dog", "cat", "horse", "car", "bed", "chair", "cup", "bus"]


def chair_runs(root, n=40, n_seeds=1, seed=0, swap=True):
    """A base run and `n_seeds` trained runs of real CHAIR records (2018 pipeline): base captions name a
    hallucinated object last; trained captions stop before it (they only say less), or with `swap` a third of
    them keep the hallucinated object and drop a correct one."""
    sc = ChairScorer("coco2018", "2018")
    rng = random.Random(seed)
    base, trained = [], [[] for _ in range(n_seeds)]
    for i in range(n):
        gt = rng.sample(OBJECTS[:4], 2)
        wrong = rng.choice([o for o in OBJECTS if o not in gt])
        cap = f"A {gt[0]} and a {gt[1]} near a {wrong}."
        base.append({"id": str(i), "prompt": "p", "image": None, "response": cap, "error": None, "image_id": i,
                     **sc.score_caption(cap, gt)})
        for s in range(n_seeds):
            short = f"A {gt[0]} and a {gt[1]}." if (i + s) % 3 or not swap else f"A {gt[0]} near a {wrong}."
            trained[s].append({**base[-1], "response": short, **sc.score_caption(short, gt)})
    extra = {"chair": {"task": CHAIR_TASK}}
    b = synthetic.write_run(root / "base", {"chair": ("chair", base)}, model_id="m", fingerprint="a", extra=extra)
    ts = [synthetic.write_run(root / f"t{s}", {"chair": ("chair", recs)}, model_id="m2", fingerprint=f"b{s}",
                              extra=extra) for s, recs in enumerate(trained)]
    return b, ts


def test_length_control_reaches_the_page_and_comparison_json(tmp_path):
    base, (trained,) = chair_runs(tmp_path, swap=False)
    out = write_report([base, trained], tmp_path / "r.html", comparison_json=tmp_path / "comparison.json",
                       n_boot=100)
    html = out.read_text()
    assert "Length-matched control" in html and "Did it name better objects, or only fewer?" in html
    data = json.loads((tmp_path / "comparison.json").read_text())
    (lc,) = data["tasks"]["chair"]["length_control"]
    assert lc["pipeline"] == "ChairScorer(synonyms='coco2018', pipeline='2018')"
    # trained captions are the base captions cut after 2 objects: the objects control equals them
    assert lc["values"]["objects"]["chair_i"] == pytest.approx(lc["values"]["run"]["chair_i"])
    assert lc["deltas"]["run-objects"]["chair_i"]["delta"] == pytest.approx(0.0)
    assert "most of the gain is shorter captions" in lc["summary"] and data["summary"] == [lc["summary"]]


def test_no_comparison_json_for_a_single_run(tmp_path):
    base, _ = chair_runs(tmp_path)
    write_report([base], tmp_path / "r.html", comparison_json=tmp_path / "c.json", n_boot=50)
    assert not (tmp_path / "c.json").exists()


def train_and_eval_dir(tmp_path):
    base, trained = synthetic.paired_runs(tmp_path / "out", n=16, n_images=0, tasks=("pope",))
    synthetic.write_training(tmp_path / "out" / "train", steps=5)
    return tmp_path / "out", base, trained


def test_resolve_sorts_runs_training_and_labels(tmp_path):
    out, base, trained = train_and_eval_dir(tmp_path)
    r = resolve([str(out)])
    assert r.runs == [base, trained] and r.training == out / "train" and r.labels == [None, None]
    r = resolve([f"{base}=Base", str(trained), str(out / "train")], [])
    assert r.labels == ["Base", None] and r.training == out / "train"
    assert resolve([str(out)], ["A", "B"]).labels == ["A", "B"]
    with pytest.raises(HalbenchError, match="--label given 1 time"):
        resolve([str(out)], ["A"])
    with pytest.raises(HalbenchError, match=r"it holds out/ \(a train-and-eval folder\)"):
        resolve([str(tmp_path)])


def test_report_command_on_a_train_and_eval_dir_with_tables(tmp_path):
    out, _, _ = train_and_eval_dir(tmp_path)
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "rep.html"), "--label", "base",
                                    "--label", "DPO", "--table", str(tmp_path / "t.md"), "--csv", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "rep.html").read_text()
    assert 'id="training"' in html and "DPO" in html
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0] == "| task | metric | dir | unit | base | DPO |"
    acc = next(line for line in md if "| accuracy |" in line)
    assert "| ↑ |" in acc and "(Δ " in acc
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0].startswith("task,metric,direction,unit,run,value,ci_low")
    assert any(r.startswith("pope,accuracy,higher,x100,DPO,") for r in rows)
    assert json.loads((tmp_path / "rep.json").read_text())["base"] == "base"


def test_report_command_names_the_subfolders_when_given_a_parent(tmp_path):
    out, _, _ = train_and_eval_dir(tmp_path)
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "out/ (a train-and-eval folder)" in res.output


def test_training_report_shows_data_rows_pairs_and_config(tmp_path):
    train = synthetic.write_training(tmp_path / "run" / "train", steps=4)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"chosen": "a dog .", "rejected": "a dog and a cat ."}) + "\n"
                             for _ in range(3)))
    (train / "data_report.json").write_text(json.dumps({
        "source": str(pairs), "n_rows": 5, "n_kept": 3, "n_skipped": 2, "n_truncated_responses": 0,
        "problems": [{"row": 2, "reason": "chosen == rejected"}, {"row": 5, "reason": "chosen == rejected"}]}))
    (train / "config.json").write_text(json.dumps({"method": "dpo", "beta": 0.1}))
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert "rows dropped" in html and "chosen == rejected" in html and "2, 5" in html
    assert "mean words, rejected" in html and "3 (100.0%)" in html  # every rejected answer is longer
    assert "&#34;beta&#34;: 0.1" in html and "Training finished after 4 logged step(s)" in html


def test_bdhs_pairs_dir_report(tmp_path):
    d = tmp_path / "pairs"
    d.mkdir()
    (d / "pairs.jsonl").write_text(json.dumps({"chosen": "a b", "rejected": "a c d"}) + "\n")
    (d / "stats.json").write_text(json.dumps({"n_rows": 2, "n_pairs": 1, "n_dropped": 1, "acceptance_rate": 0.5,
                                              "threshold": 0.97, "attempts_per_pair": {"1": 1}, "n_unguided": 0,
                                              "n_flipped": 0, "mean_similarity_accepted": 0.5}))
    html = render(build([], d))
    assert "Pair generation" in html and "BDHS pair generation" in html and "50.0%" in html
    assert "metrics.jsonl: missing" not in html


def test_seed_groups_pool_over_seeds(tmp_path):
    base, ts = chair_runs(tmp_path, n=30, n_seeds=3)
    data = build([base, *ts], labels=["base", "dpo", "dpo", "dpo"], n_boot=200)
    assert [r.label for r in data.runs] == ["base", "dpo #1", "dpo #2", "dpo #3"]
    (section,) = data.tasks
    table = section.seed_groups
    assert table.header[-1] == "dpo (3 runs)"
    row = next(r for r in table.rows if r[0] == "chair_i")
    vals = [json.loads((t / "results.json").read_text())["tasks"]["chair"]["metrics"]["chair_i"] for t in ts]
    assert row[3].startswith(f"{100 * np.mean(vals):.2f} ± {100 * np.std(vals, ddof=1):.2f} (sd)")
    # pooled delta = CHAIRi over every seed's records together minus the base's
    recs = [json.loads(x) for t in ts for x in (t / "samples" / "chair.jsonl").read_text().splitlines()]
    pooled = sum(len(r["hallucinated"]) for r in recs) / sum(len(r["mentioned"]) for r in recs)
    base_v = json.loads((base / "results.json").read_text())["tasks"]["chair"]["metrics"]["chair_i"]
    assert f"Δ {100 * (pooled - base_v):+.2f} [" in row[3]


def test_single_run_legend_and_headings(tmp_path):
    base, _ = chair_runs(tmp_path)
    html = render(build([base], n_boot=50))
    assert "better than base" not in html
    assert '<h2>chair</h2>' in html and '<span class="kind">chair</span>' not in html


def test_two_word_class_is_highlighted_whole():
    rec = {"caption": "A dining table, a table and a hot dog.", "words": ["table", "table", "hot dog"],
           "mentioned": ["dining table", "dining table", "hot dog"], "hallucinated": ["hot dog"]}
    marks = mark_caption(rec)["m"]
    assert [rec["caption"][a:b] for a, b, *_ in marks] == ["dining table", "table", "hot dog"]


class _Table:
    def __init__(self, found):
        self.found = found

    def matches(self, name, v):
        return self.found


class _RT:
    def __init__(self, found, v):
        self.table, self.metrics = _Table(found), {"f1": v}


def test_a_paired_delta_uses_one_stat_for_both_runs():
    """Base F1 matches both the pooled and the mean-over-splits F1 (within rounding), trained only the mean:
    both sides must use the mean, or the row shows a delta without CI (the POPE F1 glitch)."""
    mt = MetricTable(CHAIR, [_RT([("f1", 1.0), ("f1@mean", 1.0)], 0.92), _RT([("f1@mean", 1.0)], 0.93)], 10, 0)
    assert mt._common_matches("f1", [("f1", 1.0), ("f1@mean", 1.0)]) == [("f1@mean", 1.0), ("f1@mean", 1.0)]
    mt = MetricTable(CHAIR, [_RT([("f1", 1.0)], 0.92), _RT([("f1@mean", 1.0)], 0.93)], 10, 0)
    assert mt._common_matches("f1", [("f1", 1.0), ("f1@mean", 1.0)]) == [("f1", 1.0), ("f1@mean", 1.0)]


def test_train_failure_still_ends_in_a_report(tmp_path):
    res = CliRunner().invoke(main, ["train", "--method", "dpo", "--data", str(tmp_path / "missing.jsonl"),
                                    "--output-dir", str(tmp_path / "out")])
    assert res.exit_code == 2 and "report:" in res.output
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Training failed" in html and "preference data not found" in html


@pytest.mark.slow
def test_train_prints_progress_and_writes_a_report(tmp_path):
    res = CliRunner().invoke(main, ["train", "--method", "dpo", "--output-dir", str(tmp_path / "out"),
                                    "--set", "max_steps=2", "--set", "world_images=16"])
    assert res.exit_code == 0, res.output
    assert "dpo: 2 step(s) in" in res.output and "margin" in res.output  # the summary line
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Training finished after 2 logged step(s)" in html and "rows kept" in html and "Preference pairs" in html


def test_default_output_never_overwrites_another_report(tmp_path):
    out, base, trained = train_and_eval_dir(tmp_path)
    assert resolve([str(out)]).default_output() == out / "report.html"
    assert resolve([str(base), str(trained)]).default_output() == trained / "report.html"
    assert resolve([str(out / "train")]).default_output() == out / "train" / "report.html"
