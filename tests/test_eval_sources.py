"""From a checkpoint to published-protocol numbers in one command, and never the toy world by accident.

The done-when test of issue 18: a tiny COCO-layout root built offline (tests/test_data_roots.py) and a tiny
LLaVA checkpoint run `halbench eval --coco-root ROOT --tasks pope,chair,object_halbench --protocol opera
--limit 4` end to end; the same command without --coco-root refuses before loading the model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from halbench import cli, registry
from tests.test_data_roots import build_coco_root, cache_dir  # noqa: F401 - fixture
from tests.toy_plugins import ToyTask

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from halbench.testing.tiny import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture
def coco(tmp_path):
    return build_coco_root(tmp_path / "coco")


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def _nltk():
    from halbench.errors import NotAvailableError
    from halbench.tasks.chair import ChairScorer

    try:
        ChairScorer("coco2018", "opera")
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


def test_one_command_real_run(ckpt, coco, tmp_path, cache_dir):  # noqa: F811
    _nltk()
    out = tmp_path / "run"
    r = invoke("eval", "--model", ckpt, "--coco-root", coco, "--tasks", "pope,chair,object_halbench",
               "--protocol", "opera", "--limit", 4, "--output-dir", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    pope, chair, objhal = (res["tasks"][t] for t in ("pope", "chair", "object_halbench"))
    assert pope["data_source"] == (f"COCO val2014 ({coco}), POPE e3e3926, 8,910 questions; "
                                   "4 of them evaluated (--limit)")
    assert chair["data_source"].startswith(f"COCO val2014 ({coco}), CHAIR opera image list, 500 images")
    assert "instances + captions_val2014 (opera pipeline)" in chair["data_source"]
    assert objhal["data_source"].startswith(f"COCO val2014 ({coco}), Object HalBench questions")
    assert res["data_source"].startswith("pope: COCO val2014") and "chair: COCO val2014" in res["data_source"]
    assert res["config"]["protocol"] == "opera" and res["config"]["coco_root"] == str(coco)
    pope_files = {Path(p).parent.name for p in pope["fingerprints"]["data"]}
    assert pope_files == {"e3e3926"}  # the preset's data key applied: the files LLaVA-1.5 / OPERA used
    recs = {t: [json.loads(x) for x in (out / "samples" / f"{t}.jsonl").open()] for t in res["tasks"]}
    assert recs["pope"][0]["image"] == str(coco / "val2014" / "COCO_val2014_000000310196.jpg")
    assert recs["pope"][0]["prompt"] == "Is there a snowboard in the image?"  # the e3e3926 text, no suffix
    assert [r["image_id"] for r in recs["chair"]] == [226988, 337443, 112022, 394444]  # OPERA's list, in order
    assert recs["chair"][3]["gt_objects"] == ["horse", "person"]  # built from the root's annotations
    assert [r["image_id"] for r in recs["object_halbench"]] == [339761, 431256, 501400, 264619]
    assert chair["fingerprints"]["data"] and any("instances_val2014" in p for p in chair["fingerprints"]["data"])
    assert (cache_dir / "chair_gt").is_dir()  # GT cached under the user cache dir, not in the run
    html = (out / "report.html").read_text()
    assert f"COCO val2014 ({coco}), POPE e3e3926" in html


def test_the_same_command_without_a_root_refuses_up_front(ckpt, tmp_path, monkeypatch):
    import halbench.models

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded before the data check")

    monkeypatch.setattr(halbench.models, "load_model", no_model)
    monkeypatch.delenv("HALBENCH_COCO_ROOT", raising=False)
    out = tmp_path / "run"
    r = invoke("eval", "--model", ckpt, "--tasks", "pope,chair,object_halbench", "--protocol", "opera",
               "--limit", 4, "--output-dir", out)
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "pope, chair, object_halbench" in lines[0] and "--coco-root DIR" in lines[0]
    assert "--world default" in lines[0] and "embedded synthetic world" in lines[0]
    assert not out.exists()


def test_env_var_and_config_key_give_the_root(coco, tmp_path, monkeypatch):
    from halbench.tasks.eval_sources import task_options

    monkeypatch.setenv("HALBENCH_COCO_ROOT", str(coco))
    opts = task_options(["pope", "chair", "mmhal"], {})
    assert opts["pope"]["coco_root"] == str(coco) and opts["chair"]["coco_root"] == str(coco)
    assert "coco_root" not in opts["mmhal"]  # a root reaches only the tasks that read it
    other = tmp_path / "other"
    assert task_options(["pope"], {}, coco_root=str(other))["pope"]["coco_root"] == str(other)  # flag/config win
    assert task_options(["pope"], {"pope": {"data": "x.json"}})["pope"]["data"] == "x.json"
    assert task_options(["pope"], {}, hf_datasets=True)["pope"]["data"] == "hf:lmms-lab/POPE"
    # the config file key reaches run_eval like the flag (click default_map)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"coco_root: {tmp_path / 'missing'}\ntasks: pope\n")
    monkeypatch.delenv("HALBENCH_COCO_ROOT")
    r = invoke("eval", "--config", cfg, "--output-dir", tmp_path / "o")
    assert r.exit_code == 2 and "COCO root is not a folder" in r.output and "missing" in r.output


def test_world_default_scores_a_real_model_on_the_world_on_purpose(ckpt, tmp_path):
    out = tmp_path / "w"
    r = invoke("eval", "--model", ckpt, "--tasks", "pope", "--world", "default", "--limit", 2, "--output-dir", out,
               "--no-report")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["data_source"].startswith("pope: embedded synthetic world (")
    r = invoke("eval", "--model", ckpt, "--tasks", "pope", "--world", tmp_path / "nope", "--output-dir", out)
    assert r.exit_code == 2 and "--world: not a folder" in r.output


def test_the_guard_catches_a_task_that_reaches_for_the_world_late(ckpt, tmp_path, monkeypatch):
    """A task without uses_world() that falls back to the world inside samples() is refused before any
    record is written."""
    from halbench.tasks.world_source import task_world

    class LateWorldTask(ToyTask):
        name = "late"

        def samples(self):
            task_world(self.options)
            return super().samples()

    real = registry.load
    monkeypatch.setattr(registry, "load", lambda kind, name: LateWorldTask if name == "late" else real(kind, name))
    r = invoke("eval", "--model", ckpt, "--tasks", "late", "--output-dir", tmp_path / "o")
    assert r.exit_code == 2 and "would run on the embedded synthetic world" in r.output
    assert not (tmp_path / "o" / "samples").exists()


def test_train_and_eval_on_the_default_world_needs_no_flags(ckpt, tmp_path, monkeypatch):
    """The checkpoint trained from the embedded model is evaluated on the world because the run asked for it."""

    @dataclasses.dataclass
    class Config:
        output_dir: str = ""
        seed: int = 0
        model: str | None = None

    def train(cfg):
        Path(cfg.output_dir, "train").mkdir(parents=True, exist_ok=True)
        return ckpt  # stands for the trained checkpoint (training itself is tested elsewhere)

    Method = type("Method", (), {"name": "fake", "Config": Config, "train": staticmethod(train)})

    real = registry.load
    monkeypatch.setattr(registry, "load", lambda kind, name: Method if kind == "method" else real(kind, name))
    out = tmp_path / "tae"
    r = invoke("train-and-eval", "--method", "fake", "--tasks", "pope", "--limit", 2, "--output-dir", out)
    assert r.exit_code == 0, r.output
    base, trained = (json.loads((out / d / "results.json").read_text()) for d in ("base", "trained"))
    assert base["data_source"] == trained["data_source"]
    assert trained["data_source"].startswith("pope: embedded synthetic world")
    from halbench.world import default_world

    assert base["config"]["model"] == "default-world" and trained["config"]["model"] == str(ckpt)
    assert base["config"]["world"] is None and trained["config"]["world"] == str(default_world().root)
    assert "Data (trained): pope: embedded synthetic world" in (out / "report.html").read_text()
    # a real starting model with no data root is refused before training starts
    r = invoke("train-and-eval", "--method", "fake", "--model", ckpt, "--tasks", "pope", "--output-dir",
               tmp_path / "tae2")
    assert r.exit_code == 2 and "--coco-root" in r.output and not (tmp_path / "tae2" / "train").exists()


def test_which_models_count_as_the_embedded_one(tmp_path):
    from halbench.errors import HalbenchError
    from halbench.tasks.world_source import check_data_sources, is_embedded_model
    from halbench.world import default_world

    vlm = str(default_world().vlm_dir)
    assert is_embedded_model(None) and is_embedded_model(vlm) and is_embedded_model(f"hf:{vlm}")
    assert not is_embedded_model(str(tmp_path)) and not is_embedded_model("openai:llava@http://x/v1")
    world_task = type("T", (), {"name": "pope", "uses_world": lambda self: True})()
    data_task = type("T", (), {"name": "chair", "uses_world": lambda self: False})()
    check_data_sources([world_task], vlm, world_asked=False)  # the embedded model on its own world
    check_data_sources([world_task], str(tmp_path), world_asked=True)  # asked for
    check_data_sources([data_task], str(tmp_path), world_asked=False)  # real data
    with pytest.raises(HalbenchError, match="pope would run on the embedded synthetic world"):
        check_data_sources([world_task, data_task], "openai:llava@http://x/v1", world_asked=False)
