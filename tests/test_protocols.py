"""Protocol presets: what they set, that they never touch scoring, and sanity against the literature.

The sanity tests re-score released outputs through the SAME code path as a live eval (`halbench eval`
-> run_eval -> evaluator -> task.score -> aggregate): a replay model answers each request with the released
caption of its image, and the figures must equal the ones tests/test_chair_parity.py pins for the same files
scored directly (OPERA LLaVA-1.5 `ours`: CHAIRs 44.6 = 223/500, CHAIRi 464/3653; Object HalBench exercise run:
73/300, 87/1287 with the 2018 list the official run used, 78/300, 96/1303 with the refined default).
Data: tests/data (copied from ../shared/refdata, see the READMEs there); the LLaVA prompt check uses the full
refdata file when ../shared is present and skips otherwise.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from halbench import cli
from halbench.errors import HalbenchError
from halbench.models.base import Model
from halbench.schema import Response
from halbench.tasks.protocols import ALLOWED_KEYS, LLAVA_SUFFIX, PROTOCOLS, check_scoring_untouched, get_protocol

DATA = Path(__file__).parent / "data"
GT = DATA / "chair" / "gt_subset_opera_style.json"
REFDATA = Path(__file__).resolve().parents[2] / "shared" / "refdata"


class ReplayModel(Model):
    """Answers a request with the released output for its image (by COCO image id in the file name)."""

    backend = "replay"
    capabilities = frozenset({"generate", "image"})

    def __init__(self, answers: dict[int, str]):
        self.model_id, self.answers, self.seen = "replay", answers, []

    def fingerprint(self):
        return "replay0"

    def generate(self, requests):
        from halbench.tasks.chair import image_id_of

        self.seen += requests
        return [Response(text=self.answers[image_id_of(Path(r.image).name)]) for r in requests]


def _nltk():
    from halbench.errors import NotAvailableError
    from halbench.tasks.chair import ChairScorer

    try:
        ChairScorer("coco2018", "opera")
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


def _val2014(root: Path, ids) -> Path:
    from tests.test_data_roots import jpeg_bytes

    root.mkdir(parents=True)
    data = jpeg_bytes()
    for i in ids:
        (root / f"COCO_val2014_{i:012d}.jpg").write_bytes(data)
    return root


def _replay(monkeypatch, answers):
    import halbench.models

    model = ReplayModel(answers)
    monkeypatch.setattr(halbench.models, "load_model", lambda *a, **k: model)
    return model


def test_presets_set_only_what_the_model_sees():
    check_scoring_untouched()
    for p in PROTOCOLS.values():
        assert p.source and p.summary
        for opts in (*p.settings.values(), *p.data_keys.values()):
            assert set(opts) <= ALLOWED_KEYS
    assert get_protocol("llava-1.5").options_for("pope", real_data=True) == {
        "prompt_suffix": LLAVA_SUFFIX, "max_new_tokens": 128, "version": "e3e3926"}
    assert get_protocol("llava-1.5").options_for("pope", real_data=False) == {
        "prompt_suffix": LLAVA_SUFFIX, "max_new_tokens": 128}  # on the world: no file choice
    with pytest.raises(HalbenchError, match="unknown protocol 'nope'.*llava-1.5"):
        get_protocol("nope")


def test_precedence_preset_below_roots_below_task_options(tmp_path):
    from halbench.tasks.eval_sources import task_options

    opts = task_options(["pope", "chair"], {"pope": {"max_new_tokens": 5}}, coco_root=str(tmp_path),
                        protocol="opera")
    assert opts["pope"] == {"coco_root": str(tmp_path), "max_new_tokens": 5, "version": "e3e3926"}
    assert opts["chair"] == {"coco_root": str(tmp_path), "image_list": "opera"}
    assert task_options(["chair"], {}, protocol="opera")["chair"] == {}  # world run: prompts only


def test_tasks_listing_shows_the_presets():
    out = CliRunner().invoke(cli.main, ["tasks"]).output
    for name in PROTOCOLS:
        assert f"protocol {name}" in out
    assert "arXiv 2311.17911" in out and "version='e3e3926'" in out


def test_llava_preset_prompts_equal_llavas_own_question_file(tmp_path):
    """pope + --protocol llava-1.5 asks exactly LLaVA's llava_pope_test.jsonl questions (e3e3926 + suffix)."""
    from halbench.tasks.pope import PopeTask

    full = REFDATA / "pope" / "v_e3e3926_llava_opera" / "llava_pope_test.jsonl"
    llava = full if full.is_file() else DATA / "pope" / "v_e3e3926" / "llava_pope_test.jsonl"
    opts = get_protocol("llava-1.5").options_for("pope", real_data=True)
    task = PopeTask(image_root=str(tmp_path), **opts)
    by_split: dict[str, list[str]] = {}
    for s in task.samples():
        by_split.setdefault(s["split"], []).append(task.request(s).prompt)
    theirs: dict[str, list[str]] = {}
    for line in llava.open(encoding="utf-8"):
        row = json.loads(line)
        theirs.setdefault(row["category"], []).append(row["text"])
    for split, prompts in theirs.items():
        assert by_split[split][: len(prompts)] == prompts, split
    assert sum(map(len, by_split.values())) == 8910
    assert all(r.generation.max_new_tokens == 128 and not r.generation.do_sample
               for r in map(task.request, task.samples()[:5]))


def test_opera_llava15_captions_rescored_through_a_live_eval(tmp_path, monkeypatch):
    _nltk()
    rows = [json.loads(x) for x in gzip.open(DATA / "chair" / "opera_llava15_ours.jsonl.gz")]
    model = _replay(monkeypatch, {r["image_id"]: r["caption"] for r in rows})
    images = _val2014(tmp_path / "val2014", [r["image_id"] for r in rows])
    out = tmp_path / "run"
    r = CliRunner().invoke(cli.main, [
        "eval", "--model", "replay:opera", "--tasks", "chair", "--protocol", "opera", "--output-dir", str(out),
        "--task-option", f"chair.image_root={images}", "--task-option", f"chair.gt={GT}", "--no-report"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "results.json").read_text())["tasks"]["chair"]["metrics"]
    assert sorted(Path(q.image).name for q in model.seen) == sorted(f"COCO_val2014_{x['image_id']:012d}.jpg"
                                                                     for x in rows)  # OPERA's own 500 images
    assert {q.prompt for q in model.seen} == {"Please describe this image in detail."}
    assert {q.generation.max_new_tokens for q in model.seen} == {512}
    assert round(100 * m["chair_s"], 1) == 44.6
    assert (m["n_hallucinated_captions"], m["n_hallucinated_mentions"], m["n_mentions"]) == (223, 464, 3653)


@pytest.mark.parametrize("synonyms,expected", [("coco2018", (73, 300, 87, 1287)), (None, (78, 300, 96, 1303))])
def test_object_halbench_run_rescored_through_a_live_eval(tmp_path, monkeypatch, synonyms, expected):
    _nltk()
    rows = [json.loads(x) for x in gzip.open(DATA / "objhal" / "kchaosun_beam_search_answers.jsonl.gz")]
    _replay(monkeypatch, {r["image_id"]: r["answer"] for r in rows})
    images = _val2014(tmp_path / "val2014", [r["image_id"] for r in rows])
    opts = ["--task-option", f"object_halbench.coco={images}", "--task-option", f"object_halbench.gt={GT}"]
    if synonyms:  # the exercise run's official output used the 2018 list (tests/test_chair_parity.py)
        opts += ["--task-option", f"object_halbench.synonyms={synonyms}"]
    out = tmp_path / "run"
    r = CliRunner().invoke(cli.main, ["eval", "--model", "replay:x", "--tasks", "object_halbench", "--protocol",
                                      "rlaif-v", "--output-dir", str(out), "--no-report", *opts])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "results.json").read_text())["tasks"]["object_halbench"]["metrics"]
    got = (m["n_hallucinated_responses"], m["n_samples"], m["n_hallucinated_mentions"], m["n_mentions"])
    assert got == expected
