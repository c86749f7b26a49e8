"""Published preference layouts (training/pref_data): each loader on rows in its dataset's exact published
schema (tests/data/pref, README there), its pair rule, the three ways in (Hub id via datasets.load_dataset,
a local copy as published, halbench JSONL), format inference and forcing, errors, and `halbench data inspect`."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from halbench.errors import DataError
from halbench.training.data import load_preferences, validate_rows
from halbench.training.pref_data import FORMATS, detect, get_format, load
from halbench.training.pref_data.ha_dpo import QUESTIONS

DATA = Path(__file__).parent / "data" / "pref"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))


def png_bytes(seed: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 10, 200)).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed, "JPEG"))
    return path


def copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def pairs_of(rows) -> set[tuple[str, str]]:
    return {(r.chosen, r.rejected) for r in rows}


# -- VLFeedback / Silkie -------------------------------------------------------------------------------------
def test_vlfeedback_keeps_every_non_tied_pair_like_silkie(tmp_path):
    folder = copy("vlfeedback", tmp_path)
    write_image(folder / "merged_images" / "svit-1001.jpg")
    rows, problems = load(folder)
    assert rows.info["format"] == "vlfeedback" and problems == []
    assert rows.info["ignored_files"] == [{"file": str(folder / "instruction_source.jsonl"), "why": "layout unknown"}]
    first = [r for r in rows if r.id.startswith("svit-1001")]
    # means: llava 4.67, fuyu 3.0, qwen 4.67 (tie with llava), idefics "N/A" -> non-numeric for its 3 pairs
    assert pairs_of(first) == {("A red cup and a plate.", "A cup, a plate and a knife."),
                               ("There is a red cup on a plate.", "A cup, a plate and a knife.")}
    second = [r for r in rows if r.id.startswith("lrv-2002")]
    score = {"score two": 2, "score three": 3, "score four": 4, "score five": 5}
    assert len(second) == 6 and all(score[r.chosen] > score[r.rejected] for r in second)
    assert pairs_of(second) == {(a, b) for a in score for b in score if score[a] > score[b]}
    assert rows.info["rule_dropped"] == {"non-numeric rating": 3, "tie": 1}
    assert rows.info["n_records"] == 2 and rows.info["n_pairs_from_rule"] == 8
    assert first[0].image == str((folder / "merged_images" / "svit-1001.jpg").absolute())
    assert first[0].prompt == "What is on the table?"  # '<image>' placeholder removed


def test_vlfeedback_column_wise_completions_and_embedded_image(tmp_path):
    """The HF `sequence` feature arrives column-wise; the parquet export embeds the image."""
    rec = json.loads((DATA / "vlfeedback" / "vlfeedback_80k.jsonl").read_text().splitlines()[1])
    comps = rec["completions"]
    rec["completions"] = {k: [c[k] for c in comps] for k in comps[0]}
    rec["image"] = {"bytes": png_bytes(3), "path": "lrv-2002.jpg"}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({**rec, "image": None}) + "\n")
    rows, _ = load(path)
    assert len(rows) == 6
    from halbench.training.pref_data.base import Context, Record
    from halbench.training.pref_data.vlfeedback import pairs

    made, _ = pairs(Record(rec, 1, "x"), Context(tmp_path))
    assert len(made) == 6 and Path(made[0].image).read_bytes() == png_bytes(3)


# -- RLAIF-V / RLHF-V (parquet with embedded image bytes) ------------------------------------------------------
def rlaif_dataset(rows: list[dict]):
    import datasets

    feats = datasets.Features({k: datasets.Value("string") for k in rows[0]} | {"image": datasets.Image()})
    return datasets.Dataset.from_list([{**r, "image": {"bytes": png_bytes(i), "path": r["image_path"]}}
                                       for i, r in enumerate(rows)], features=feats)


def test_rlaif_v_local_parquet_shards_and_hub_id(tmp_path, monkeypatch):
    import datasets

    rows_json = json.loads((DATA / "rlaif_v" / "rows.json").read_text())
    ds = rlaif_dataset(rows_json)
    (tmp_path / "RLAIF-V-Dataset").mkdir()
    ds.to_parquet(str(tmp_path / "RLAIF-V-Dataset" / "RLAIF-V-Dataset_000.parquet"))
    (tmp_path / "RLAIF-V-Dataset" / "logps").mkdir()  # RLAIF-V's trainer writes these copies next to the data
    ds.to_parquet(str(tmp_path / "RLAIF-V-Dataset" / "logps" / "RLAIF-V-Dataset_withlogp_000.parquet"))
    local, problems = load(tmp_path / "RLAIF-V-Dataset")
    assert local.info["format"] == "rlaif-v" and problems == [] and len(local) == 2
    assert [i["why"] for i in local.info["ignored_files"]] == ["RLAIF-V log-prob copy"]
    assert [(r.prompt, r.chosen, r.rejected, r.id) for r in local] == [
        (r["question"], r["chosen"], r["rejected"], r["idx"]) for r in rows_json]
    assert Path(local[1].image).read_bytes() == png_bytes(1)  # the embedded bytes, written once, unchanged

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, *a, **k: calls.append(repo) or
                        datasets.DatasetDict({"train": ds}))
    hub, _ = load_preferences("openbmb/RLAIF-V-Dataset")
    assert calls == ["openbmb/RLAIF-V-Dataset"] and hub.info["format"] == "rlaif-v"
    assert [(r.chosen, Path(r.image).read_bytes()) for r in hub] == [(r.chosen, Path(r.image).read_bytes())
                                                                     for r in local]


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="could not load Hub dataset 'openbmb/RLHF-V-Dataset'.*local copy"):
        load("openbmb/RLHF-V-Dataset")


def test_rlhf_v_text_field_and_save_to_disk_dir(tmp_path):
    import datasets

    rows_json = json.loads((DATA / "rlhf_v" / "rows.json").read_text())
    feats = datasets.Features({"ds_name": datasets.Value("string"), "image": datasets.Image(),
                               "text": datasets.Value("string"), "origin_dataset": datasets.Value("string"),
                               "origin_split": datasets.Value("string"), "idx": datasets.Value("int64"),
                               "image_path": datasets.Value("string")})
    ds = datasets.Dataset.from_list([{**r, "image": {"bytes": png_bytes(i), "path": None}}
                                     for i, r in enumerate(rows_json)], features=feats)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    rows, problems = load(tmp_path / "saved")
    assert rows.info["format"] == "rlhf-v" and len(rows) == 1
    assert (rows[0].prompt, rows[0].chosen, rows[0].rejected) == (
        "What color is the bus?", "The bus is yellow.", "The bus is yellow and blue.")
    assert [(p.row, p.kind) for p in problems] == [(2, "malformed")] and "'text'" in problems[0].reason


# -- JSON-array layouts: LLaVA-RLHF, POVID ---------------------------------------------------------------------
def test_llava_rlhf_preferred_output_is_chosen(tmp_path):
    coco = tmp_path / "coco" / "train2017"
    write_image(coco / "000000033471.jpg")
    rows, problems = load(DATA / "llava_rlhf" / "llava_7b_v1_preference.json", image_root=coco)
    assert rows.info["format"] == "llava-rlhf" and problems == []
    assert (rows[0].chosen, rows[0].rejected) == ("The bus is white and red.",
                                                  "The bus is white, red and has a blue stripe.")
    assert (rows[1].chosen, rows[1].rejected) == ("The cat is lying on the keyboard.", "The cat is typing emails.")
    assert rows[0].prompt == "What are the colors of the bus in the image?"
    assert rows[0].image == str((coco / "000000033471.jpg").absolute())
    # multi-turn: the last question is the prompt; the earlier turns are kept, and counted
    assert rows[1].prompt == "What is the cat doing?" and len(rows[1].extra["history"]) == 2
    assert rows.info["n_multi_turn"] == 1


def test_povid_json_array(tmp_path):
    rows, problems = load(DATA / "povid" / "POVID_preference_data_for_VLLMs_version_1.json", image_root=tmp_path)
    assert rows.info["format"] == "povid" and problems == [] and len(rows) == 2
    assert (rows[0].prompt, rows[0].chosen, rows[0].rejected) == (
        "Describe this image.", "A lunch box with broccoli and bread.", "A lunch box with broccoli, bread and a fork.")
    assert rows[1].image == str((tmp_path / "COCO_train2014_000000000025.jpg").absolute())


# -- HA-DPO ------------------------------------------------------------------------------------------------------
def test_ha_dpo_desc_and_pope_with_visual_genome_paths(tmp_path):
    vg = copy("ha_dpo", tmp_path) / "VG"
    write_image(vg / "VG_100K_2" / "1.jpg")
    write_image(vg / "VG_100K" / "107899.jpg")
    rows, problems = load(DATA / "ha_dpo" / "llava-v1.5", image_root=vg)
    assert rows.info["format"] == "ha-dpo" and problems == []
    desc = [r for r in rows if r.extra["kind"] == "desc"]
    pope = [r for r in rows if r.extra["kind"] == "pope"]
    # the authors' draws: random.seed(42), per image (file order) choice(chosen), choice(rejected), choice(question)
    rng, expected = random.Random(42), []
    for key, v in json.loads((DATA / "ha_dpo" / "llava-v1.5" / "desc_data.json").read_text()).items():
        c, r, q = rng.choice(v["chosen"]), rng.choice(v["rejected"]), rng.choice(QUESTIONS)
        expected += [(q, c, r)] * 2  # pope + desc * 2
    assert [(r.prompt, r.chosen, r.rejected) for r in desc] == expected
    assert [(r.prompt, r.chosen) for r in pope] == [
        ("Is there a bus in the image?", "No, there is no bus in the image."),
        ("Is there a cat in the image?", "No, there is no cat.")]
    assert rows.info["rule_dropped"] == {"already correct": 1}
    assert desc[0].image == str(vg / "VG_100K_2" / "1.jpg") and pope[1].image == str(vg / "VG_100K" / "107899.jpg")
    report = validate_rows(rows, source="ha", parse_problems=problems)
    assert report.to_json()["n_kept"] == 6 and report.to_json()["dropped_by_reason"] == {"already correct": 1}


# -- TRL conversational ----------------------------------------------------------------------------------------
def test_trl_conversational_parquet(tmp_path):
    import datasets

    rows_json = json.loads((DATA / "trl" / "rows.json").read_text())
    msg = [{"role": datasets.Value("string"),
            "content": [{"text": datasets.Value("string"), "type": datasets.Value("string")}]}]
    feats = datasets.Features({"prompt": msg, "chosen": msg, "rejected": msg,
                               "images": datasets.Sequence(datasets.Image())})
    ds = datasets.Dataset.from_list([{**r, "images": [{"bytes": png_bytes(i), "path": None}]}
                                     for i, r in enumerate(rows_json)], features=feats)
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    ds.select([0]).to_parquet(str(tmp_path / "data" / "test-00000-of-00001.parquet"))
    rows, _ = load(tmp_path)
    train = str(tmp_path / "data" / "train-00000-of-00001.parquet")
    assert rows.info["format"] == "trl" and rows.info["files"] == [train]
    assert rows.info["ignored_files"] == [{"file": str(tmp_path / "data" / "test-00000-of-00001.parquet"),
                                           "why": "not the train split"}]
    assert [(r.prompt, r.chosen, r.rejected) for r in rows] == [
        ("Who is wearing the hat?", "The boy is.", "The boy and the girl are."),
        ("How many birds are there?", "Two birds.", "Three birds.")]
    assert Path(rows[1].image).read_bytes() == png_bytes(1)


# -- inference, forcing, errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path,name", [
    ("vlfeedback/vlfeedback_80k.jsonl", "vlfeedback"), ("rlaif_v/rows.json", "rlaif-v"), ("rlhf_v/rows.json", "rlhf-v"),
    ("llava_rlhf/llava_7b_v1_preference.json", "llava-rlhf"), ("trl/rows.json", "trl"),
    ("povid/POVID_preference_data_for_VLLMs_version_1.json", "povid"), ("ha_dpo/llava-v1.5/pope_data.json", "ha-dpo"),
    ("ha_dpo/llava-v1.5/desc_data.json", "ha-dpo")])
def test_each_layout_is_told_apart_by_its_fields(path, name):
    from halbench.training.pref_data.readers import file_records

    first = next(iter(file_records(DATA / path))).data
    assert [f.name for f in FORMATS.values() if f.detect(first)][:1] == [name] and detect(first).name == name


def test_prompt_only_rows_still_load_for_online_dpo(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"image": "a.png", "prompt": "Describe the image."}\n')
    rows, problems = load_preferences(tmp_path / "prompts.jsonl")
    assert rows.info["format"] == "halbench" and (rows[0].prompt, rows[0].chosen) == ("Describe the image.", "")
    assert rows[0].image == str((tmp_path / "a.png").absolute())


def test_forced_format_mismatch_names_the_missing_fields(tmp_path):
    src = DATA / "vlfeedback" / "vlfeedback_80k.jsonl"
    with pytest.raises(DataError, match=r"--data-format povid.*\['conversations', 'rejected_conversations', 'image'\]"):
        load(src, data_format="povid")
    with pytest.raises(DataError, match="vlfeedback_80k.jsonl:1:"):
        load(f"povid::{src}")
    with pytest.raises(DataError, match="unknown preference data format 'nope'.*vlfeedback"):
        get_format("nope")
    rows, _ = load(src, data_format="silkie")  # alias of vlfeedback
    assert len(rows) == 8


def test_unknown_layout_and_malformed_files_are_clear_errors(tmp_path):
    (tmp_path / "x.json").write_text('[{"foo": 1}]')
    with pytest.raises(DataError, match=r"x.json: cannot tell the preference layout: fields \['foo'\]"):
        load(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text('[\n {"prompt": "a",\n  "chosen": }\n]')
    with pytest.raises(DataError, match=r"bad.json:3: malformed JSON"):
        load(tmp_path / "bad.json")
    (tmp_path / "latin.json").write_bytes(b'[\n{"prompt": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"latin.json:2: not UTF-8"):
        load(tmp_path / "latin.json")
    (tmp_path / "mixed.jsonl").write_bytes(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "\xff"}\n')
    rows, problems = load(tmp_path / "mixed.jsonl")
    assert len(rows) == 1 and [(p.row, p.kind) for p in problems] == [(2, "malformed")]


def test_a_row_missing_a_field_is_skipped_with_its_row_number(tmp_path):
    lines = (DATA / "vlfeedback" / "vlfeedback_80k.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["completions"]
    (tmp_path / "v.jsonl").write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    rows, problems = load(tmp_path / "v.jsonl")
    assert [(p.row, p.kind) for p in problems] == [(2, "missing field")] and "'completions'" in problems[0].reason
    with pytest.raises(DataError, match=r"v.jsonl:2: missing field 'completions'"):
        validate_rows(rows, source=str(tmp_path / "v.jsonl"), parse_problems=problems, bad_rows="refuse")


# -- data report and CLI -----------------------------------------------------------------------------------------
def test_data_report_keeps_the_rule_counts(tmp_path):
    folder = copy("vlfeedback", tmp_path)
    write_image(folder / "merged_images" / "svit-1001.jpg")  # lrv-2002's image is missing: 6 pairs dropped
    rows, problems = load_preferences(folder)
    report = validate_rows(rows, source=str(folder), parse_problems=problems).to_json()
    assert report["format"] == "vlfeedback" and report["n_pairs_from_rule"] == 8 and report["n_kept"] == 2
    assert report["dropped_by_reason"] == {"missing image": 6, "non-numeric rating": 3, "tie": 1}


def test_data_inspect_cli(tmp_path):
    from halbench.cli import main

    folder = copy("vlfeedback", tmp_path)
    write_image(folder / "merged_images" / "svit-1001.jpg")
    res = CliRunner().invoke(main, ["data", "inspect", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert (s["format"], s["n_records"], s["n_pairs_from_rule"], s["n_pairs_usable"]) == ("vlfeedback", 2, 8, 2)
    assert s["dropped_by_reason"] == {"missing image": 6, "non-numeric rating": 3, "tie": 1}
    assert s["images"]["rows_found"] == 2 and s["images"]["unique_missing"] == 1
    assert s["words"]["rejected"]["max"] == 7
    povid_file = DATA / "povid" / "POVID_preference_data_for_VLLMs_version_1.json"
    text = CliRunner().invoke(main, ["data", "inspect", str(povid_file)])
    assert text.exit_code == 0 and "format: povid" in text.output and "2 missing" in text.output
    bad = CliRunner().invoke(main, ["data", "inspect", str(folder), "--data-format", "trl"])
    assert bad.exit_code == 2 and "--data-format trl" in bad.output and "Traceback" not in bad.output


def test_train_cli_passes_format_and_image_root(tmp_path):
    from halbench.cli_train import method_values
    from halbench.errors import HalbenchError

    values = method_values(None, tmp_path, 0, "d/", (), "cpu", "vlfeedback", "imgs")
    assert values["data"] == "vlfeedback::d/" and values["image_root"] == "imgs"
    with pytest.raises(DataError, match="unknown preference data format"):
        method_values(None, tmp_path, 0, "d/", (), "cpu", "nope", None)
    with pytest.raises(HalbenchError, match="--data-format needs --data"):
        method_values(None, tmp_path, 0, None, (), "cpu", "povid", None)


def test_train_cli_on_vlfeedback_writes_the_rule_counts(tmp_path):
    """End to end: `halbench train --data FOLDER --data-format vlfeedback --image-root ...` -> data_report.json."""
    from halbench.cli import main
    from halbench.testing.tiny import make_tiny_llava

    model = make_tiny_llava(tmp_path / "tiny", seed=0)
    folder = copy("vlfeedback", tmp_path)
    images = tmp_path / "images"
    write_image(images / "merged_images" / "svit-1001.jpg")
    write_image(images / "merged_images" / "lrv-2002.jpg", seed=1)
    res = CliRunner().invoke(main, [
        "train", "--method", "dpo", "--model", str(model), "--data", str(folder), "--data-format", "vlfeedback",
        "--image-root", str(images), "--output-dir", str(tmp_path / "out"), "--set", "max_steps=1",
        "--set", "per_device_batch_size=2", "--set", "save_steps=0"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "train" / "data_report.json").read_text())
    assert (report["format"], report["n_records"], report["n_pairs_from_rule"], report["n_kept"]) == (
        "vlfeedback", 2, 8, 8)
    assert report["dropped_by_reason"] == {"non-numeric rating": 3, "tie": 1}


def test_a_missing_local_file_is_not_taken_for_a_hub_id(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no Hub call for a file name"))
    with pytest.raises(DataError, match="preference data not found"):
        load("data/pairs.jsonl")


def test_bdhs_generate_checks_the_data_before_loading_a_model(tmp_path):
    from halbench.cli import main

    povid_file = DATA / "povid" / "POVID_preference_data_for_VLLMs_version_1.json"
    res = CliRunner().invoke(main, ["bdhs", "generate", "--data", str(povid_file), "--data-format", "vlfeedback",
                                    "--model", str(tmp_path / "no-such-model"), "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--data-format vlfeedback" in res.output and "'completions'" in res.output
    assert not (tmp_path / "o").exists()
