"""The bad-input table (docs/BAD_INPUT.md mirrors it): each row is one exact input a user can give, and the
outcome every row must have is "clear": exit code 2, one `error:` line that names the file (and line, for
line formats) or the option, no traceback, and nothing written anywhere.

The harness classifies what actually happened, so the same table measures any version of halbench:
`python tests/test_bad_input.py` prints the outcome of every row (how docs/BAD_INPUT.md's before/after
columns were produced: once with the checkout at 83128ed, once with this one).
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

BAD = b"\xff\xfe\x80"  # bytes that are not UTF-8 anywhere in a line


def world() -> Path:
    from halbench.world import default_world

    return Path(default_world().root)


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A syntactically valid PNG that declares w x h pixels (PIL reads the size from IHDR alone)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def pope_rows(n: int = 3, image: str | None = None) -> list[str]:
    rows = (world() / "pope" / "coco_pope_random.json").read_text().splitlines()[:n]
    if image is not None:
        rows = [json.dumps({**json.loads(r), "image": image}) for r in rows]
    return rows


def write(path: Path, lines: list[str | bytes] | bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(lines, (bytes, str)):
        data = lines.encode() if isinstance(lines, str) else lines
    else:
        data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


def pope_file(tmp: Path, lines: list[str | bytes], name: str = "p") -> Path:
    return write(tmp / name / "coco_pope_random.json", lines)


def eval_pope(tmp: Path, *extra: str) -> list[str]:
    return ["eval", "--tasks", "pope", "--limit", "3", "--no-report", "--output-dir", str(tmp / "out"), *extra]


def good_captions(tmp: Path) -> Path:
    return write(tmp / "caps.jsonl", [json.dumps({"image_id": 1, "caption": "A cat on a dining table."})])


def images_dir(tmp: Path, **files: bytes) -> Path:
    d = tmp / "img"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(world() / "images" / "000000000436.png", d / "good.png")
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


# -- the table ----------------------------------------------------------------------------------------------
# build(tmp) -> (CLI args, strings the one error line must contain)
Build = Callable[[Path], "tuple[list[str], list[str]]"]


@dataclass(frozen=True)
class Case:
    id: str
    point: str  # the issue item it comes from
    input: str  # the exact input, in words (docs/BAD_INPUT.md)
    build: Build


def _utf8_pope_predictions(tmp):
    data = pope_file(tmp, pope_rows())
    pred = write(tmp / "pred.jsonl", ['{"question_id": 1, "text": "yes"}', b'{"question_id": 2, "text": "no' + BAD + b'"}'])
    return ["score", "pope", "--predictions", str(pred), "--data", str(data)], [f"{pred}:2", "UTF-8"]


def _utf8_pope_data(tmp):
    data = pope_file(tmp, [pope_rows()[0], pope_rows()[1][:-1].encode() + BAD + b"}"])
    return eval_pope(tmp, "--task-option", f"pope.data={data}"), [f"{data}:2", "UTF-8"]


def _utf8_chair_predictions(tmp):
    pred = write(tmp / "caps.jsonl", [b'{"image_id": 1, "caption": "A cat ' + BAD + b'"}'])
    return ["score", "chair", "--predictions", str(pred)], [f"{pred}:1", "UTF-8"]


def _utf8_chair_gt(tmp):
    gt = write(tmp / "gt.json", b'{"1": ["cat", "dining table' + BAD + b'"]}')
    return ["score", "chair", "--predictions", str(good_captions(tmp)), "--gt", str(gt)], [f"{gt}:1", "UTF-8"]


def _utf8_chair_image_list_score(tmp):
    lst = write(tmp / "list.txt", [b"1", b"2" + BAD])
    return ["score", "chair", "--predictions", str(good_captions(tmp)), "--data", str(lst)], [f"{lst}:2", "UTF-8"]


def _utf8_chair_image_list_eval(tmp):
    lst = write(tmp / "list.jsonl", ['{"image_id": 1}', b'{"image_id": 2' + BAD + b"}"])
    return ["eval", "--tasks", "chair", "--task-option", f"chair.image_list={lst}", "--no-report",
            "--output-dir", str(tmp / "out")], [f"{lst}:2", "UTF-8"]


def _utf8_objhal_predictions(tmp):
    pred = write(tmp / "ans.jsonl", [b'{"image_id": 1, "answer": "A cat ' + BAD + b'"}'])
    return ["score", "object_halbench", "--predictions", str(pred), "--gt",
            str(world() / "gt_objects.json")], [f"{pred}:1", "UTF-8"]


def _utf8_mmhal_data(tmp):
    data = write(tmp / "mmhal.json", b'[{"question": "What ' + BAD + b'"}]')
    return ["eval", "--tasks", "mmhal", "--task-option", f"mmhal.data={data}", "--judge",
            "openai:j@http://127.0.0.1:9/v1", "--no-report", "--output-dir", str(tmp / "out")], [f"{data}:1", "UTF-8"]


def _utf8_preference_data(tmp):
    prefs = write(tmp / "prefs.jsonl", [b'{"prompt": "Describe.", "chosen": "A cat' + BAD + b'", "rejected": "A dog"}'])
    return ["train", "--method", "dpo", "--data", str(prefs), "--output-dir", str(tmp / "out")], [f"{prefs}:1", "UTF-8"]


def _utf8_preference_data_train_and_eval(tmp):
    prefs = write(tmp / "prefs.jsonl", [b'{"prompt": "Describe.", "chosen": "A ' + BAD + b'", "rejected": "A dog"}'])
    return ["train-and-eval", "--method", "dpo", "--data", str(prefs), "--tasks", "pope", "--limit", "2",
            "--output-dir", str(tmp / "out")], [f"{prefs}:1", "UTF-8"]


def _bomb_image(tmp):
    img = images_dir(tmp)
    png_header_only(img / "bomb.png", 20000, 20000)
    data = pope_file(tmp, pope_rows(3, "bomb.png"))
    return eval_pope(tmp, "--task-option", f"pope.data={data}", "--task-option", f"pope.image_root={img}"), \
        [str(img / "bomb.png"), "pixels"]


def _max_new_tokens_abc(tmp):
    return eval_pope(tmp, "--task-option", "pope.max_new_tokens=abc"), ["pope.max_new_tokens", "'abc'", "integer"]


def _batch_size_list(tmp):
    cfg = write(tmp / "cfg.yaml", "tasks: pope\nbatch_size: [1, 2]\n")
    return ["eval", "--config", str(cfg), "--output-dir", str(tmp / "out")], [str(cfg), "batch_size"]


def _truncated_safetensors(tmp):
    model = tmp / "vlm"
    shutil.copytree(world() / "vlm", model)
    st = model / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    return eval_pope(tmp, "--model", str(model), "--world", str(world())), [str(st), "truncated"]


def _wrong_architecture(tmp):
    model = tmp / "vlm"
    shutil.copytree(world() / "vlm", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl")
    (model / "config.json").write_text(json.dumps(cfg))
    return eval_pope(tmp, "--model", str(model), "--world", str(world())), [str(model), "architecture"]


def _bare_number_pope(tmp):
    data = pope_file(tmp, pope_rows())
    pred = write(tmp / "pred.jsonl", ['{"question_id": 1, "text": "yes"}', "5"])
    return ["score", "pope", "--predictions", str(pred), "--data", str(data)], [f"{pred}:2", "JSON object"]


def _bare_number_pope_data(tmp):
    data = pope_file(tmp, [pope_rows()[0], "7"])
    return eval_pope(tmp, "--task-option", f"pope.data={data}"), [f"{data}:2", "JSON object"]


def _bare_number_chair(tmp):
    pred = write(tmp / "caps.jsonl", ["5"])
    return ["score", "chair", "--predictions", str(pred)], [f"{pred}:1"]


def _bogus_option(tmp):
    return eval_pope(tmp, "--task-option", "pope.bogus=1"), ["bogus", "valid keys", "max_new_tokens", "image_root"]


def _empty_image_list(tmp):
    lst = write(tmp / "empty.txt", b"")
    return ["eval", "--tasks", "chair", "--task-option", f"chair.image_list={lst}", "--no-report",
            "--output-dir", str(tmp / "out")], [str(lst), "empty"]


def _score_chair_empty(tmp):
    pred = write(tmp / "caps.jsonl", b"")
    return ["score", "chair", "--predictions", str(pred)], [str(pred), "empty"]


def _pope_no_text(tmp):
    data = pope_file(tmp, pope_rows())
    pred = write(tmp / "pred.jsonl", [json.dumps({"question_id": i}) for i in (1, 2, 3)])
    return ["score", "pope", "--predictions", str(pred), "--data", str(data)], [f"{pred}:1", "text"]


def _image_escapes_root(tmp):
    root = tmp / "a" / "b" / "root"
    root.mkdir(parents=True)
    shutil.copy(world() / "images" / "000000000436.png", tmp / "a" / "x.png")  # exists, outside the root
    data = pope_file(tmp, pope_rows(3, "../../x.png"))
    return eval_pope(tmp, "--task-option", f"pope.data={data}", "--task-option", f"pope.image_root={root}"), \
        ["../../x.png", "outside the image root", str(data)]


def _corrupt_images(tmp):
    good = (world() / "images" / "000000000436.png").read_bytes()
    img = images_dir(tmp, **{"zero.png": b"", "cut.png": good[: len(good) // 2], "text.png": b"not an image\n"})
    rows = [json.dumps({**json.loads(r), "image": name}) for r, name in
            zip(pope_rows(3), ("zero.png", "cut.png", "text.png"))]
    data = pope_file(tmp, rows)
    return eval_pope(tmp, "--task-option", f"pope.data={data}", "--task-option", f"pope.image_root={img}"), \
        ["zero.png", "cut.png", "text.png", "--skip-bad-images"]


CASES = [
    Case("utf8-pope-predictions", "9", "`score pope`: predictions JSONL with bytes ff fe 80 on line 2", _utf8_pope_predictions),
    Case("utf8-pope-data", "9", "`eval --tasks pope`: pope.data question file with non-UTF-8 bytes on line 2", _utf8_pope_data),
    Case("utf8-chair-predictions", "9", "`score chair`: captions JSONL with non-UTF-8 bytes on line 1", _utf8_chair_predictions),
    Case("utf8-chair-gt", "9", "`score chair --gt`: ground-truth JSON with non-UTF-8 bytes", _utf8_chair_gt),
    Case("utf8-chair-image-list-score", "9", "`score chair --data`: image list .txt with non-UTF-8 bytes on line 2",
         _utf8_chair_image_list_score),
    Case("utf8-chair-image-list-eval", "9", "`eval --tasks chair`: chair.image_list JSONL, non-UTF-8 on line 2",
         _utf8_chair_image_list_eval),
    Case("utf8-objhal-predictions", "9", "`score object_halbench`: answers JSONL with non-UTF-8 bytes",
         _utf8_objhal_predictions),
    Case("utf8-mmhal-data", "9", "`eval --tasks mmhal`: mmhal.data JSON with non-UTF-8 bytes", _utf8_mmhal_data),
    Case("utf8-preference-data", "9", "`train --method dpo --data`: preference JSONL with non-UTF-8 bytes",
         _utf8_preference_data),
    Case("utf8-preference-data-train-and-eval", "9", "`train-and-eval --method dpo --data`: the same preference JSONL"
         " (refused before the base eval)", _utf8_preference_data_train_and_eval),
    Case("bomb-image", "9", "`eval --tasks pope`: an image that is a 20000x20000 PNG (a few hundred bytes)", _bomb_image),
    Case("max-new-tokens-abc", "9", "`--task-option pope.max_new_tokens=abc`", _max_new_tokens_abc),
    Case("batch-size-list", "9", "`--config` file with `batch_size: [1, 2]`", _batch_size_list),
    Case("truncated-safetensors", "9", "`--model DIR` whose model.safetensors is cut to half its size", _truncated_safetensors),
    Case("wrong-architecture", "9", "`--model DIR` whose config.json says qwen2_vl over LLaVA weights", _wrong_architecture),
    Case("bare-number-pope-predictions", "9", "`score pope`: predictions JSONL whose line 2 is `5`", _bare_number_pope),
    Case("bare-number-pope-data", "9", "`eval --tasks pope`: question file whose line 2 is `7`", _bare_number_pope_data),
    Case("bare-number-chair-predictions", "9", "`score chair`: captions JSONL whose line 1 is `5`", _bare_number_chair),
    Case("unknown-task-option", "10", "`--task-option pope.bogus=1`", _bogus_option),
    Case("empty-image-list", "10", "`--task-option chair.image_list=EMPTY.txt` (a 0-byte file)", _empty_image_list),
    Case("score-chair-empty", "10", "`score chair --predictions EMPTY.jsonl` (a 0-byte file)", _score_chair_empty),
    Case("pope-predictions-no-text", "10", "`score pope`: predictions lines with question_id and no text", _pope_no_text),
    Case("image-escapes-root", "10", "POPE question whose image is `../../x.png` (exists, outside image_root)",
         _image_escapes_root),
    Case("corrupt-images", "11", "POPE images: a 0-byte .png, a PNG cut in half, a text file named .png", _corrupt_images),
]


# -- the harness ----------------------------------------------------------------------------------------------
def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def outcome(case: Case, tmp: Path) -> tuple[str, str]:
    """(class, output): clear | traceback | exit 0 | wrote files | exit N | unclear message."""
    from halbench.cli import main

    args, needles = case.build(tmp)
    before = _snapshot(tmp)
    r = CliRunner().invoke(main, args, catch_exceptions=True)
    out = r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return "traceback", f"{type(r.exception).__name__}: {r.exception}"
    if r.exit_code == 0:
        return "exit 0", out[-300:]
    if _snapshot(tmp) != before:
        return "wrote files", out[-300:]
    errors = [line for line in out.splitlines() if line.startswith(("error:", "Error:"))]
    if r.exit_code != 2:
        return f"exit {r.exit_code}", out[-300:]
    if len(errors) != 1 or not all(n in out for n in needles):
        return "unclear message", out[-400:]
    return "clear", errors[0]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error_and_nothing_written(case, tmp_path):
    kind, detail = outcome(case, tmp_path / "case")
    assert kind == "clear", f"{case.id}: {kind}: {detail}"


def test_skip_bad_images_runs_the_rest_and_counts_them(tmp_path):
    from halbench.cli import main

    good = (world() / "images" / "000000000436.png").read_bytes()
    img = images_dir(tmp_path, **{"zero.png": b"", "text.png": b"hello"})
    rows = [json.dumps({**json.loads(r), "image": name}) for r, name in
            zip(pope_rows(3), ("good.png", "zero.png", "text.png"))]
    data = pope_file(tmp_path, rows)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--tasks", "pope", "--task-option", f"pope.data={data}",
                                  "--task-option", f"pope.image_root={img}", "--output-dir", str(out),
                                  "--task-option", "pope.max_new_tokens=2", "--skip-bad-images"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())["tasks"]["pope"]
    assert res["n_samples"] == 1 and res["metrics"]["n_skipped_images"] == 2
    assert sorted(Path(s["image"]).name for s in res["skipped_images"]) == ["text.png", "zero.png"]
    assert "n_skipped_images" in (out / "report.html").read_text()
    assert good  # the good image was used


def test_known_options_cover_what_each_task_reads():
    """preflight.KNOWN_OPTIONS must list exactly the option keys each built-in task's source reads."""
    import re

    from halbench.preflight import KNOWN_OPTIONS

    src = Path(__file__).resolve().parents[1] / "tasks"
    files = {"pope": ["pope.py", "world_source.py"], "chair": ["chair.py", "world_source.py"],
             "object_halbench": ["object_halbench.py"], "mmhal": ["mmhal.py"],
             "reward_analysis": ["reward_analysis.py", "world_source.py"]}
    judge_keys = {"judge"}  # read by judged tasks, declared through JUDGE_OPTIONS
    for task, names in files.items():
        text = "".join((src / n).read_text() for n in names)
        read = set(re.findall(r"\b(?:options|o)(?:\.get\(|\[)[\"'](\w+)[\"']", text)) - judge_keys
        assert read | {"world"} >= KNOWN_OPTIONS[task] - {"world"} and read <= KNOWN_OPTIONS[task], task


if __name__ == "__main__":  # print the outcome table (docs/BAD_INPUT.md's columns)
    import tempfile

    counts: dict[str, int] = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            kind, detail = outcome(case, Path(d) / "case")
        counts[kind] = counts.get(kind, 0) + 1
        print(f"| {case.id} | {kind} | {detail.splitlines()[0][:150] if detail else ''} |", flush=True)
    print(json.dumps(counts), file=sys.stderr)
