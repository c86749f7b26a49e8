"""halbench.reports: statistics, record handling and build() on synthetic run directories.

Synthetic runs (halbench.reports.synthetic) follow the runs.py layout and the TEAM.md record fields; their
results.json metrics are computed there with plain loops, independently of reports/kinds.py.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import scipy.stats

from halbench.errors import DataError, HalbenchError
from halbench.reports import build, synthetic, write_report
from halbench.reports.breakdowns import auroc
from halbench.reports.kinds import CHAIR, KINDS, POPE, StatTable
from halbench.reports.plots import histogram, line_chart, nice_ticks
from halbench.reports.stats import (binom_two_sided_half, bootstrap_ci, bootstrap_sums, mcnemar, paired_deltas,
                                    unpaired_deltas)
from halbench.reports.thumbs import Thumbnailer, embed_artifact
from halbench.reports.views import mark_caption


# -- statistics ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(0, 0), (0, 1), (3, 20), (10, 20), (7, 9), (40, 100), (480, 1000), (5, 5000)])
def test_exact_mcnemar_matches_scipy_binomtest(k, n):
    expected = 1.0 if n == 0 else scipy.stats.binomtest(k, n, 0.5).pvalue
    assert binom_two_sided_half(k, n) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_counts_discordant_pairs():
    base = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    other = np.array([1, 0, 0, 1, 1, 1, 1, 1], bool)
    res = mcnemar(base, other)
    assert (res.b, res.c) == (2, 3)
    assert res.p == pytest.approx(scipy.stats.binomtest(2, 5, 0.5).pvalue)


def test_bootstrap_ci_agrees_with_normal_approximation():
    rng = np.random.default_rng(1)
    x = (rng.random(4000) < 0.3).astype(float)
    ci = bootstrap_ci({"x": x, "n": np.ones_like(x)}, lambda s: s["x"] / s["n"], n_boot=2000)
    p, se = x.mean(), math.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert ci.lo == pytest.approx(p - 1.96 * se, abs=0.004)
    assert ci.hi == pytest.approx(p + 1.96 * se, abs=0.004)


def test_bootstrap_coverage_is_near_nominal():
    rng = np.random.default_rng(2)
    hits = 0
    for i in range(200):
        x = (rng.random(150) < 0.4).astype(float)
        ci = bootstrap_ci({"x": x, "n": np.ones_like(x)}, lambda s: s["x"] / s["n"], n_boot=400, seed=i)
        hits += ci.lo <= 0.4 <= ci.hi
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_sums_resample_whole_rows_and_are_deterministic():
    cols = {"a": np.arange(7.0), "one": np.ones(7)}
    s1, s2 = bootstrap_sums(cols, 50, seed=3), bootstrap_sums(cols, 50, seed=3)
    assert np.array_equal(s1["a"], s2["a"])
    assert np.all(s1["one"] == 7)  # every resample has n rows
    assert not np.array_equal(s1["a"], bootstrap_sums(cols, 50, seed=4)["a"])


def test_paired_bootstrap_of_identical_runs_is_exactly_zero():
    x = (np.random.default_rng(0).random(300) < 0.5).astype(float)
    cols = {"x": x, "n": np.ones_like(x)}
    res = paired_deltas(cols, cols, {"m": lambda s: s["x"] / s["n"]}, n_boot=200)["m"]
    assert res.delta == 0 and (res.ci.lo, res.ci.hi) == (0, 0) and res.p == 1.0


def test_pairing_narrows_the_interval_for_correlated_runs():
    rng = np.random.default_rng(5)
    a = (rng.random(800) < 0.6).astype(float)
    b = np.where(rng.random(800) < 0.9, a, 1 - a)  # mostly the same answers
    fn = {"m": lambda s: s["x"] / s["n"]}
    ca, cb = {"x": a, "n": np.ones(800)}, {"x": b, "n": np.ones(800)}
    paired, unpaired = paired_deltas(ca, cb, fn, 500)["m"], unpaired_deltas(ca, cb, fn, 500)["m"]
    assert paired.delta == pytest.approx(unpaired.delta)
    assert (paired.ci.hi - paired.ci.lo) < 0.6 * (unpaired.ci.hi - unpaired.ci.lo)


def test_auroc_matches_scipy_mann_whitney():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 60).round(1), rng.normal(0, 1, 40).round(1)  # rounding makes ties
    u = scipy.stats.mannwhitneyu(pos, neg).statistic
    assert auroc(pos, neg) == pytest.approx(u / (60 * 40))


# -- metric definitions vs. an independent implementation ---------------------------------------------------
def _ok(records):
    return [r for r in records if r.get("error") is None]


@pytest.mark.parametrize("name,make", [
    ("pope", lambda: synthetic.pope_records(300, 0.7, 0, ["x.png"])),
    ("chair", lambda: synthetic.chair_records(200, 0.4, 0, ["x.png"])),
    ("mmhal", lambda: synthetic.mmhal_records(96, 3.0, 0, ["x.png"])),
])
def test_every_reported_metric_is_recomputed_from_records(name, make):
    records = make()
    metrics = synthetic.metrics_for(name, records)
    table = StatTable.of(KINDS[name], _ok(records))
    for metric, value in metrics.items():
        if metric in ("n_samples", "n_errors"):
            continue
        assert table.match(metric, value) is not None, metric


def _rates(metrics):
    return {k: v for k, v in metrics.items() if isinstance(v, float) and not k.startswith("n_")}


def test_real_task_aggregates_are_recomputed():
    """The tasks' own aggregate functions (tasks/*.py) on TEAM.md-shaped records: every rate they report,
    per split / per question type included, is matched, so it gets a CI in the report."""
    from halbench.tasks.chair import chair_metrics
    from halbench.tasks.mmhal import mmhal_metrics
    from halbench.tasks.object_halbench import objhal_metrics
    from halbench.tasks.pope import pope_metrics

    pope = synthetic.pope_records(400, 0.7, 1, [])
    chair = synthetic.chair_records(200, 0.4, 1, [])
    chair[3] |= {"caption": "", "skipped": "empty caption"}  # not scored by the task: not by the report either
    objhal = [dict(r) for r in synthetic.chair_records(120, 0.4, 2, [])]
    objhal[5] = {k: objhal[5][k] for k in ("id", "prompt", "image", "response", "error", "caption")} | {
        "judge_error": "timeout"}
    mmhal = [dict(r, index=i) for i, r in enumerate(synthetic.mmhal_records(96, 3.0, 1, []))]
    cases = [("pope", pope, pope_metrics(pope)), ("chair", chair, chair_metrics(chair)),
             ("object_halbench", objhal, objhal_metrics(objhal)), ("mmhal", mmhal, mmhal_metrics(mmhal, "strict"))]
    for name, recs, metrics in cases:
        kind = KINDS[name]
        table = StatTable.of(kind, [r for r in _ok(recs) if kind.scored(r)])
        unmatched = [k for k, v in _rates(metrics).items() if table.match(k, v) is None]
        assert unmatched == [], (name, unmatched)
    assert StatTable.of(POPE, _ok(pope)).match("accuracy", pope_metrics(pope)["accuracy"])[0] == "accuracy@mean"


def test_a_differently_defined_metric_gets_no_interval():
    records = _ok(synthetic.pope_records(300, 0.7, 0, []))
    table = StatTable.of(POPE, records)
    parsed = [r for r in records if r["pred"] != "other"]  # accuracy over parsed answers only
    acc_parsed = sum(r["correct"] for r in parsed) / len(parsed)
    assert table.match("accuracy", acc_parsed) is None
    acc = sum(r["correct"] for r in records) / len(records)
    assert table.match("pope_acc", acc) == ("accuracy", 1.0)
    assert table.match("accuracy", 100 * acc) == ("accuracy", 100.0)


def test_chair_len_scale_and_aliases():
    records = synthetic.chair_records(50, 0.4, 0, [])
    table = StatTable.of(CHAIR, records)
    mean_words = sum(r["n_words"] for r in records) / 50
    assert table.match("len", 0.01 * mean_words) == ("len", 0.01)  # official prints 0.01 x len
    assert CHAIR.canonical("CHAIRs") == "chair_s" and CHAIR.canonical("chair_chair_i") == "chair_i"


# -- captions ------------------------------------------------------------------------------------------------
def test_mark_caption_finds_mentions_in_order_on_word_boundaries():
    rec = {"caption": "A category of Cats: a cat on a dining table, and another cat.",
           "words": ["cat", "dining table", "cat", "dog"], "mentioned": ["cat", "dining table", "cat", "dog"],
           "hallucinated": ["cat"]}
    out = mark_caption(rec)
    spans = [(out["t"][s:e], kind, cls) for s, e, kind, cls in out["m"]]
    # "category" and "Cats" are not the word "cat"; the unplaceable "dog" is skipped, never mis-marked
    assert spans == [("cat", "h", "cat"), ("dining table", "c", "dining table"), ("cat", "h", "cat")]


def test_mark_caption_prefers_valid_mention_spans():
    rec = {"caption": "A cat. The cat sleeps.", "words": ["cat", "cat"], "mentioned": ["cat", "cat"],
           "hallucinated": [], "mention_spans": [[11, 14], [0, 5]]}  # second span is wrong: searched instead
    assert [m[:2] for m in mark_caption(rec)["m"]] == [[2, 5], [11, 14]]


def test_mark_caption_offsets_count_utf16_units_like_javascript():
    out = mark_caption({"caption": "🙂🙂 a dog", "words": ["dog"], "mentioned": ["dog"], "hallucinated": []})
    (start, end, kind, _), = out["m"]
    utf16 = out["t"].encode("utf-16-le")
    assert utf16[2 * start:2 * end].decode("utf-16-le") == "dog" and (start, end) == (7, 10)


# -- plots -------------------------------------------------------------------------------------------------
def test_nice_ticks_cover_the_range():
    for lo, hi in [(0, 1), (0.0012, 0.0093), (-3, 250), (5e-6, 5e-6), (2, 2)]:
        t = nice_ticks(lo, hi)
        assert t[0] <= min(lo, hi) and t[-1] >= max(lo, hi) and len(t) >= 2


def test_line_chart_drops_non_finite_points_and_says_so():
    c = line_chart("loss", [("loss", [1, 2, 3, 4], [0.7, float("nan"), 0.5, float("inf")])], "step")
    assert c.lines[0][0].count(",") == 2 and "2 non-finite" in c.note
    assert "no finite" in line_chart("x", [("x", [1], [float("nan")])], "step").note


def test_histogram_fractions_use_shared_bins():
    c = histogram("h", [("a", [0, 0, 1]), ("b", [1] * 10)], "v", bins=2)
    assert len(c.lines) == 2 and c.legend == [("a (n=3)", 0), ("b (n=10)", 1)]


# -- thumbnails and artifacts ----------------------------------------------------------------------------------
def test_thumbnails_are_small_deduplicated_and_capped(tmp_path):
    paths = synthetic.make_images(tmp_path / "img", 4, size=300)
    th = Thumbnailer(max_images=2)
    k0 = th.key(paths[0], tmp_path)
    assert th.key(paths[0], tmp_path / "elsewhere") == k0  # same file, one thumbnail
    assert th.key("img/img_00001.png", tmp_path) is not None  # run-relative path
    assert th.key(paths[2], tmp_path) is None and th.capped == 1
    assert th.key("missing.png", tmp_path) is None
    assert th.data[k0].startswith("data:image/jpeg;base64,") and len(th.data[k0]) < 8000


def test_artifacts_embed_images_inside_the_run_only(tmp_path):
    run = tmp_path / "run"
    art = run / "artifacts" / "t"
    art.mkdir(parents=True)
    synthetic._bar_png(art / "p.png", [0.5])
    (art / "table.csv").write_text("a,b\n")
    (tmp_path / "secret.png").write_bytes((art / "p.png").read_bytes())
    assert embed_artifact(run, art, "p.png")[0].startswith("data:image/png;base64,")
    assert embed_artifact(run, art, "artifacts/t/p.png")[0] is not None  # run-relative also accepted
    assert "not an image" in embed_artifact(run, art, "table.csv")[1]
    assert "outside the run" in embed_artifact(run, art, "../../../secret.png")[1]
    assert "not found" in embed_artifact(run, art, "nope.png")[1]


# -- build() -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    base, trained = synthetic.paired_runs(root, n=120, n_images=6, extra_tasks=True)
    synthetic.write_training(root / "train", steps=30)
    return root, base, trained


def test_comparison_has_cis_deltas_and_paired_tests(pair):
    root, base, trained = pair
    data = build([base, trained], root / "train", n_boot=300)
    assert data.mode == "comparison" and [r.label for r in data.runs] == ["base", "trained"]
    pope = next(t for t in data.tasks if t.key == "pope")
    acc = next(m for m in pope.metrics if m.name == "accuracy")
    assert acc.unit == "×100" and acc.arrow == "↑"
    assert acc.cells[0].ci and not acc.cells[0].delta
    assert acc.cells[1].delta and acc.cells[1].delta_ci and "McNemar" in acc.cells[1].p
    chair = next(t for t in data.tasks if t.key == "chair")
    assert all(m.cells[1].p.endswith("(paired bootstrap)") for m in chair.metrics)
    custom = next(t for t in data.tasks if t.key == "custom_vqa")
    em = [json.loads((p / "results.json").read_text())["tasks"]["custom_vqa"]["metrics"]["exact_match"]
          for p in (base, trained)]
    assert custom.kind == "generic" and not custom.views and not custom.metrics[0].cells[1].ci
    assert custom.metrics[0].cells[1].delta == f"{em[1] - em[0]:+.4f}"


def test_flip_view_matches_mcnemar_counts(pair):
    _, base, trained = pair
    data = build([base, trained], n_boot=50)
    pope = next(t for t in data.tasks if t.key == "pope")
    rows = pope.views[0].payload["rows"]
    recs = {p.parent.parent.name: {r["id"]: r for r in map(json.loads, p.read_text().splitlines())}
            for p in (base / "samples" / "pope.jsonl", trained / "samples" / "pope.jsonl")}
    ids = [i for i in recs["base"] if recs["base"][i]["error"] is None and recs["trained"][i]["error"] is None]
    res = mcnemar(np.array([recs["base"][i]["correct"] for i in ids]),
                  np.array([recs["trained"][i]["correct"] for i in ids]))
    groups = [r["f"]["g"] for r in rows]
    assert (groups.count("rw"), groups.count("wr")) == (res.b, res.c) and res.b > 0 and res.c > 0
    assert groups == sorted(groups, key=["rw", "wr"].index)  # right->wrong first


def test_chair_view_groups_appeared_and_disappeared(pair):
    _, base, trained = pair
    chair = next(t for t in build([base, trained], n_boot=50).tasks if t.key == "chair")
    rows = chair.views[0].payload["rows"]
    groups = {r["f"]["g"] for r in rows}
    assert {"appeared", "disappeared"} <= groups
    for r in rows:
        (base_cap, base_badge), (new_cap, new_badge) = r["c"][1], r["c"][2]
        if r["f"]["g"] == "appeared":
            assert base_badge["c"] == "good" and new_badge["c"] == "bad"
            assert any(m[2] == "h" for m in new_cap["m"]) and not any(m[2] == "h" for m in base_cap["m"])


def test_single_run_report_lists_errors_and_hallucinations(pair):
    _, base, _ = pair
    data = build([base], n_boot=50)
    assert data.mode == "single" and not data.warnings
    pope = next(t for t in data.tasks if t.key == "pope")
    assert pope.views[0].title.startswith("POPE wrong answers")
    assert all(c.delta == "" for m in pope.metrics for c in m.cells)


def test_object_halbench_is_handled_like_chair(tmp_path):
    recs = synthetic.chair_records(30, 0.4, 0, [])
    run = synthetic.write_run(tmp_path / "r", {"object_halbench": ("object_halbench", recs)}, model_id="m",
                              fingerprint="f")
    sec = build([run], n_boot=50).tasks[0]
    assert sec.kind == "object_halbench" and all(c.ci for m in sec.metrics for c in m.cells)
    assert sec.views[0].title.startswith("Object HalBench captions") and sec.charts


def test_reward_correlation_sign():
    from halbench.reports.breakdowns import hallucination_correlation

    recs = [{"sentence_reward": 1.0 - k / 3, "objects": [{"hallucinated": i < k} for i in range(3)]} for k in range(4)]
    assert hallucination_correlation(recs) == pytest.approx(-1.0)


def test_warnings_when_runs_are_not_comparable(tmp_path):
    recs = synthetic.pope_records(20, 0.7, 0, [])
    a = synthetic.write_run(tmp_path / "a", {"pope": ("pope", recs)}, model_id="m", fingerprint="f1")
    b = synthetic.write_run(tmp_path / "b", {"pope": ("pope", recs)}, model_id="m", fingerprint="f1",
                            extra={"pope": {"fingerprints": {"data": {"x": "1"}, "prompts": "other"}}})
    warnings = build([a, b], n_boot=20).warnings
    assert any("same model fingerprint" in w for w in warnings)
    assert any("data fingerprints differ" in w for w in warnings) and any("prompts" in w for w in warnings)


def test_failed_training_is_reported_with_base_results(tmp_path):
    base = synthetic.write_run(tmp_path / "base", {"pope": ("pope", synthetic.pope_records(30, 0.7, 0, []))},
                               model_id="m", fingerprint="f")
    train = synthetic.write_training(tmp_path / "train", steps=12, failed=True)
    with open(train / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "loss": NaN}\n{"step": 14, "lo')  # diverged, then killed mid-line
    data = build([base], train, n_boot=50)
    assert data.training.status == "failed" and "loss is NaN" in data.training.error
    assert data.training.n_steps == 13 and data.tasks[0].metrics
    assert "non-finite" in data.training.charts[0].note


def test_training_without_status_or_runs(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    data = build([], train)
    assert data.mode == "training" and data.training.status == "unknown"
    assert any("status.json: missing" in n for n in data.training.notes)
    with pytest.raises(HalbenchError, match="nothing to report"):
        build([])


def test_unreadable_runs_raise_data_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="run directory not found"):
        build([tmp_path / "nope"])
    (tmp_path / "r").mkdir()
    with pytest.raises(DataError, match="no results.json"):
        build([tmp_path / "r"])
    (tmp_path / "r" / "results.json").write_text("{bad")
    with pytest.raises(DataError, match=r"results.json:1: malformed"):
        build([tmp_path / "r"])


def test_records_missing_fields_degrade_to_metrics_only(tmp_path):
    recs = synthetic.pope_records(20, 0.7, 0, [])
    run = synthetic.write_run(tmp_path / "run", {"pope": ("pope", recs)}, model_id="m", fingerprint="f")
    lines = (run / "samples" / "pope.jsonl").read_text().splitlines()
    lines[3] = json.dumps({k: v for k, v in json.loads(lines[3]).items() if k != "correct"})
    (run / "samples" / "pope.jsonl").write_text("\n".join(lines) + "\n")
    pope = build([run], n_boot=20).tasks[0]
    assert any("lacks field 'correct'" in n for n in pope.notes)
    assert pope.metrics and not pope.views and all(not c.ci for m in pope.metrics for c in m.cells)


def test_nan_metrics_are_shown_not_hidden(tmp_path):
    recs = synthetic.pope_records(10, 0.7, 0, [])
    extra = {"pope": {"metrics": {"accuracy": float("nan"), "f1": 0.5}}}
    a = synthetic.write_run(tmp_path / "a", {"pope": ("pope", recs)}, model_id="m", fingerprint="1", extra=extra)
    b = synthetic.write_run(tmp_path / "b", {"pope": ("pope", recs)}, model_id="m", fingerprint="2")
    # halbench now writes strict JSON (NaN -> null); a results.json from an older version may still hold NaN
    res = json.loads((a / "results.json").read_text())
    assert res["tasks"]["pope"]["metrics"]["accuracy"] is None
    res["tasks"]["pope"]["metrics"]["accuracy"] = float("nan")
    (a / "results.json").write_text(json.dumps(res))
    rows = {m.name: m for m in build([a, b], n_boot=20).tasks[0].metrics}
    assert rows["accuracy"].cells[0].text == "nan" and rows["accuracy"].cells[1].delta == ""
    assert rows["f1"].cells[1].delta  # finite metrics still compare


def test_duplicate_folder_names_get_distinct_labels(tmp_path):
    recs = synthetic.pope_records(10, 0.7, 0, [])
    a = synthetic.write_run(tmp_path / "x" / "run", {"pope": ("pope", recs)}, model_id="m", fingerprint="1")
    b = synthetic.write_run(tmp_path / "y" / "run", {"pope": ("pope", recs)}, model_id="m", fingerprint="2")
    assert [r.label for r in build([a, b], n_boot=20).runs] == ["x/run", "y/run"]


def test_write_report_is_atomic_and_returns_the_path(pair, tmp_path):
    _, base, trained = pair
    out = write_report([base, trained], tmp_path / "sub" / "report.html", n_boot=50)
    assert out == tmp_path / "sub" / "report.html" and out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes
