"""CLI behaviour: config precedence, clear errors with exit 2, listings."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from halbench import cli, registry
from halbench.errors import HalbenchError
from tests.toy_plugins import ToyModel, ToyTask


@pytest.fixture
def toy_registry(monkeypatch):
    real = registry.load

    def load(kind, name):
        if kind == "task" and name == "toy":
            return ToyTask
        return real(kind, name)

    monkeypatch.setattr(registry, "load", load)
    monkeypatch.setattr("halbench.models.load_model", lambda spec, **kw: ToyModel(), raising=False)


def invoke(*args):
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def test_help_lists_commands():
    out = invoke("--help").output
    for cmd in ("eval", "train", "train-and-eval", "report", "score", "tasks", "models"):
        assert cmd in out


def test_config_file_precedence(tmp_path, toy_registry):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [toy]\nlimit: 5\nbatch_size: 2\ntask_option: {toy: {n: 12}}\n")
    out = tmp_path / "out"
    r = invoke("eval", "--config", str(cfg), "--limit", "7", "--output-dir", str(out), "--no-report")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["limit"] == 7  # flag beats file
    assert res["config"]["batch_size"] == 2  # file beats default
    assert res["tasks"]["toy"]["n_samples"] == 7


def test_malformed_config_names_file_and_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("tasks: [toy\nlimit: 3\n")
    r = CliRunner().invoke(cli.main, ["eval", "--config", str(cfg)])
    assert r.exit_code == 2 and "bad.yaml:" in r.output and "malformed YAML" in r.output


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("taks: pope\n")
    r = CliRunner().invoke(cli.main, ["eval", "--config", str(cfg)])
    assert r.exit_code == 2 and "unknown option 'taks'" in r.output


def test_unknown_task_is_clear_and_writes_nothing(tmp_path, toy_registry):
    r = CliRunner().invoke(cli.main, ["eval", "--tasks", "nosuch", "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown task 'nosuch'" in r.output
    assert not (tmp_path / "o").exists()


def test_unknown_variant(tmp_path, toy_registry):
    r = CliRunner().invoke(cli.main, ["eval", "--tasks", "toy:nope", "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no variant 'nope'" in r.output


def test_missing_model_dir_is_clear(tmp_path):
    r = CliRunner().invoke(cli.main, ["eval", "--model", str(tmp_path / "missing"), "--tasks", "pope",
                                      "--world", "default", "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing" in r.output and "embedded synthetic world" not in r.output
    assert not (tmp_path / "o").exists()


def test_task_option_for_absent_task(tmp_path, toy_registry):
    r = CliRunner().invoke(cli.main, ["eval", "--tasks", "toy", "--task-option", "pope.data=x"])
    assert r.exit_code == 2 and "pope" in r.output


def test_set_values_are_converted_by_field_type():
    import dataclasses

    from halbench.cli_train import make_method_config

    @dataclasses.dataclass
    class Config:
        learning_rate: float = 1e-5
        steps: int = 1
        lora: bool = False
        name: str = "x"

    class M:
        name = "m"

    M.Config = Config
    cfg = make_method_config(M, {"learning_rate": "1e-4", "steps": "3", "lora": "true", "name": "1e-4"})
    assert cfg == Config(1e-4, 3, True, "1e-4")
    with pytest.raises(HalbenchError, match="expected float"):
        make_method_config(M, {"learning_rate": "fast"})
