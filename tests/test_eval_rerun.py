"""A re-run of a finished eval says the run is complete instead of drawing empty "0sample" bars (issue 15)."""

from __future__ import annotations

from halbench.evaluator import evaluate
from tests.toy_plugins import ToyModel, ToyTask


def test_rerun_of_a_finished_eval_says_complete(tmp_path, capsys):
    evaluate(ToyModel(), [ToyTask(n=6)], tmp_path / "r", batch_size=2)
    first = capsys.readouterr().err
    assert "complete" not in first and "6/6" in first  # the first run draws its bar
    evaluate(ToyModel(), [ToyTask(n=6)], tmp_path / "r", batch_size=2)
    again = capsys.readouterr()
    text = again.out + again.err
    assert "complete, all 6 samples already recorded" in text and "0sample" not in text and "0/0" not in text
