"""Preference data validation before training: row numbers, skip-with-count vs refuse, image-token
truncation, response truncation, HF datasets, and the batch layout."""

from __future__ import annotations

import json

import pytest
import torch

from halbench.errors import DataError
from halbench.training import dpo
from halbench.training.data import PairBatcher, flush_left, load_preferences, validate_rows

from .test_training_fixtures import (_private_cache, cfg_kwargs, make_images, pair_rows, pairs_file,  # noqa: F401
                                     tiny_llava, write_jsonl)


@pytest.fixture
def bad_file(tmp_path):
    images = make_images(tmp_path, 2)
    good = pair_rows(images, 3)
    rows = good + [
        {"image": "missing.png", "prompt": "Describe.", "chosen": "a dog", "rejected": "a cat"},  # line 4
        {"image": images[0], "prompt": "Describe.", "chosen": "", "rejected": "a cat"},  # line 5
        {"image": images[0], "prompt": "Describe.", "chosen": "A dog.", "rejected": " a  DOG. "},  # line 6
        "{not json",  # line 7
        "[1, 2]",  # line 8
        {"image": images[1], "question": "Describe.", "chosen": "A car.", "rejected": "A bus."},  # alias, ok
    ]
    return write_jsonl(tmp_path / "bad.jsonl", rows)


def test_problems_are_reported_with_line_numbers_and_skipped(bad_file):
    rows, parse = load_preferences(bad_file)
    report = validate_rows(rows, source=str(bad_file), parse_problems=parse)
    assert [(p.row, p.reason.split(":")[0]) for p in report.problems] == [
        (4, "image"), (5, "empty chosen"), (6, "chosen == rejected"), (7, "malformed JSON (Expecting property name "
                                                                          "enclosed in double quotes)"),
        (8, "not a JSON object")]
    assert "image file not found" in report.problems[0].reason
    assert len(report.kept) == 4 and report.kept[-1].prompt == "Describe." and report.n_rows == 9
    assert "9 rows, 4 kept, 5 skipped" in report.summary()


def test_refuse_lists_every_bad_row(bad_file):
    rows, parse = load_preferences(bad_file)
    with pytest.raises(DataError) as e:
        validate_rows(rows, source=str(bad_file), parse_problems=parse, bad_rows="refuse")
    msg = str(e.value)
    for line in (4, 5, 6, 7, 8):
        assert f"bad.jsonl:{line}:" in msg
    assert "5 invalid preference row(s)" in msg


def test_training_skips_bad_rows_and_writes_a_report(tiny_llava, bad_file, tmp_path):  # noqa: F811
    dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, bad_file, tmp_path / "out", max_steps=1)))
    report = json.loads((tmp_path / "out" / "train" / "data_report.json").read_text())
    assert report["n_kept"] == 4 and [p["row"] for p in report["problems"]] == [4, 5, 6, 7, 8]
    with pytest.raises(DataError, match="bad_rows=refuse"):
        dpo.train(dpo.Config(**cfg_kwargs(tiny_llava, bad_file, tmp_path / "out2", bad_rows="refuse")))
    status = json.loads((tmp_path / "out2" / "train" / "status.json").read_text())
    assert status["status"] == "failed" and "bad.jsonl:4" in status["error"]


def test_image_tokens_that_would_be_truncated_are_caught_before_training(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from halbench.models.hf import HFModel

    hf = HFModel(tiny_llava)
    rows, _ = load_preferences(pairs_file)
    # "<s>USER: " is a few tokens, then 16 image tokens: max_length 12 cuts the image
    reason, _ = PairBatcher(hf, 12).check_lengths(rows[0])
    assert reason.startswith("image tokens would be truncated") and "16 image tokens" in reason
    with pytest.raises(DataError, match="x:1: image tokens would be truncated"):
        validate_rows(rows[:2], source="x", encoder=PairBatcher(hf, 12), bad_rows="refuse")
    with pytest.raises(DataError, match="no usable preference rows"):  # skip mode, but nothing is left
        validate_rows(rows[:2], source="x", encoder=PairBatcher(hf, 12))


def test_no_room_for_the_response_and_truncated_responses(tiny_llava, pairs_file):  # noqa: F811
    from halbench.models.hf import HFModel

    hf = HFModel(tiny_llava)
    rows, _ = load_preferences(pairs_file)
    batcher = PairBatcher(hf, 512)
    prompt_len = len(hf.build_inputs(batcher.requests(rows[:1]), [None])["input_ids"][0])
    reason, _ = PairBatcher(hf, prompt_len).check_lengths(rows[0])
    assert "no room for the response" in reason
    reason, truncated = PairBatcher(hf, prompt_len + 2).check_lengths(rows[0])
    assert reason is None and truncated
    batch = PairBatcher(hf, prompt_len + 2).pairs(rows[:2])
    assert batch["input_ids"].shape[1] == prompt_len + 2
    assert int((batch["input_ids"] == hf.model.config.image_token_index).sum(1).min()) == 16  # image intact
    assert (batch["labels"] != -100).sum(1).tolist() == [2, 2, 2, 2]


def test_pair_batch_layout(tiny_llava, pairs_file):  # noqa: F811
    from halbench.models.hf import HFModel

    hf = HFModel(tiny_llava)
    rows, _ = load_preferences(pairs_file)
    batch = PairBatcher(hf, 512).pairs(rows[:2])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape[0] == 4 and batch["pixel_values"].shape[0] == 4
    assert bool(mask[:, 0].all())  # right-padded: every row starts at column 0
    tok = hf.tokenizer
    for r, text in enumerate([rows[0].chosen, rows[1].chosen, rows[0].rejected, rows[1].rejected]):
        target = tok.decode(ids[r][labels[r] != -100])
        assert target.strip() == text + tok.eos_token
    pos = batch["position_ids"]
    assert torch.equal(pos[mask.bool()], (mask.cumsum(1) - 1)[mask.bool()])


def test_flush_left_moves_tokens_and_truncates():
    inputs = {"input_ids": torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]]),
              "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),
              "labels": torch.tensor([[-100, -100, -100, 6, 7], [-100, -100, 3, 4, 5]]),
              "position_ids": torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])}
    out = flush_left(inputs, pad_token_id=0, max_length=4)
    assert out["input_ids"].tolist() == [[5, 6, 7, 0], [1, 2, 3, 4]]
    assert out["labels"].tolist() == [[-100, 6, 7, -100], [-100, -100, 3, 4]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 2], [0, 1, 2, 3]]


def test_hf_dataset_with_in_memory_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    img = Image.new("RGB", (20, 20), (200, 10, 10))
    ds = datasets.Dataset.from_dict({"image": [img, img], "question": ["Describe.", "Describe."],
                                     "chosen": ["A red square.", ""], "rejected": ["A dog.", "A cat."]})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ds"))
    rows, _ = load_preferences(tmp_path / "ds")
    report = validate_rows(rows, source="ds")
    assert len(report.kept) == 1 and report.problems[0].row == 2 and report.problems[0].reason == "empty chosen"
    assert report.kept[0].image.endswith(".png")
