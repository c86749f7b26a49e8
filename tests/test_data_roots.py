"""Data roots (--coco-root / --mmhal-root), the cached CHAIR ground truth, and the Hugging Face copies.

`build_coco_root` writes a tiny COCO 2014 folder offline in the official layout: val2014/COCO_val2014_<12-digit
id>.jpg JPEGs, annotations/instances_val2014.json (real COCO category ids and names) and captions_val2014.json.
HF fixtures are parquet files written by `datasets` in the published column layout with embedded images;
`datasets.load_dataset` is monkeypatched to read them, so nothing reaches the network.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from halbench.errors import DataError, HalbenchError

REPO = Path(__file__).resolve().parent.parent
#: real COCO 2014 category ids
CATEGORIES = [(1, "person"), (3, "car"), (17, "cat"), (18, "dog"), (47, "cup"), (62, "chair"), (67, "dining table")]
#: image id -> (instance category ids, captions); ids are those the packaged lists ask for first
IMAGES = {
    42: ([18], ["A dog lying on a rug."]),
    310196: ([1, 3], ["A man standing next to a car.", "A person near a parked car."]),  # POPE's first image
    226988: ([1, 67], ["A woman at a dining table with pizza.", "A lady eating at a table."]),  # OPERA list
    337443: ([17], ["A cat sleeping on a couch."]),
    112022: ([62, 47], ["A chair next to a cup of coffee."]),
    394444: ([1], ["A man riding a horse on the beach."]),  # "horse": a caption-only GT object
    339761: ([62], ["An empty chair in a room."]),  # Object HalBench's first prompts
    431256: ([3], ["Cars on a street."]),
    501400: ([1, 18], ["A boy playing with his dog."]),
    264619: ([47], ["A cup on a table."]),
}


def jpeg_bytes(seed: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), ((seed * 37) % 256, 90, 160)).save(buf, format="JPEG")
    return buf.getvalue()


def packaged_ids() -> list[int]:
    """Every image id the packaged CHAIR lists and Object HalBench prompts name (all are COCO val2014)."""
    from halbench.tasks.chair import IMAGE_LISTS, read_image_list
    from halbench.tasks.object_halbench import QUESTIONS_FILE, read_questions

    ids = {i for f in IMAGE_LISTS.values() for i in read_image_list(f)}
    return sorted(ids | {r["image_id"] for r in read_questions(QUESTIONS_FILE)})


def build_coco_root(root: Path, images: dict = IMAGES) -> Path:
    """JPEGs and annotations for `images`; the annotation files also list (without annotations, as COCO lists
    images nobody labelled) every other image the packaged lists name, like the real 40k-image val2014 files."""
    (root / "val2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    listed = list(images) + [i for i in packaged_ids() if i not in images]
    infos = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": 40, "height": 30} for i in listed]
    for i in images:
        (root / "val2014" / f"COCO_val2014_{i:012d}.jpg").write_bytes(jpeg_bytes(i))
    anns = [{"id": n, "image_id": i, "category_id": c, "bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0,
             "segmentation": [[0, 0, 10, 0, 10, 10]]}
            for n, (i, c) in enumerate(((i, c) for i, (cs, _) in images.items() for c in cs), 1)]
    caps = [{"id": n, "image_id": i, "caption": t}
            for n, (i, t) in enumerate(((i, t) for i, (_, ts) in images.items() for t in ts), 1)]
    cats = [{"id": c, "name": name, "supercategory": "x"} for c, name in CATEGORIES]
    (root / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": infos, "annotations": anns, "categories": cats}))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"images": infos, "annotations": caps}))
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def coco(tmp_path):
    return build_coco_root(tmp_path / "coco")


def _scorer(synonyms="coco2018"):
    from halbench.errors import NotAvailableError
    from halbench.tasks.chair import ChairScorer

    try:
        return ChairScorer(synonyms, "opera")
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


# -- COCO root -------------------------------------------------------------------------------------------------
def test_coco_root_errors_name_the_missing_piece(tmp_path, coco):
    from halbench.tasks.data_roots import CocoRoot

    with pytest.raises(DataError, match="not a folder"):
        CocoRoot.open(tmp_path / "nope")
    (coco / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(DataError, match="captions_val2014.json") as e:
        CocoRoot.open(coco).require_annotations()
    assert "annotations/captions_val2014.json" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="val2014/"):
        CocoRoot.open(empty).require_images()


def test_tasks_read_the_root_and_check_it_up_front(tmp_path, coco, cache_dir):
    from halbench.tasks.chair import ChairTask
    from halbench.tasks.object_halbench import ObjectHalBenchTask
    from halbench.tasks.pope import PopeTask

    pope = PopeTask(coco_root=str(coco))
    first = pope.samples()[0]
    assert first["image_path"] == str(coco / "val2014" / "COCO_val2014_000000310196.jpg")
    assert len(pope.samples()) == 9000 and not pope.uses_world()
    assert pope.data_source().startswith(f"COCO val2014 ({coco}), POPE 3df3ba1, 9,000 questions")
    old = PopeTask(coco_root=str(coco), version="e3e3926")
    assert len(old.samples()) == 8910 and "imange" in " ".join(s["text"] for s in old.samples())
    with pytest.raises(HalbenchError, match="unknown POPE version"):
        PopeTask(coco_root=str(coco), version="v2")
    objhal = ObjectHalBenchTask(coco_root=str(coco))
    assert objhal.samples()[0]["image"] == str(coco / "val2014" / "COCO_val2014_000000339761.jpg")
    (coco / "annotations" / "instances_val2014.json").unlink()
    for cls in (ChairTask, ObjectHalBenchTask):  # constructing the task is enough to be told (no model yet)
        with pytest.raises(DataError, match="instances_val2014.json"):
            cls(coco_root=str(coco))


def test_chair_gt_from_annotations_is_the_official_build_and_is_cached(coco, cache_dir, monkeypatch):
    from halbench.tasks import chair_gt
    from halbench.tasks.chair import ChairTask, _gt_from_coco

    scorer = _scorer()
    ids = [226988, 394444, 42]
    inst, caps = coco / "annotations" / "instances_val2014.json", coco / "annotations" / "captions_val2014.json"
    got = chair_gt.coco_gt(inst, caps, scorer, ids)
    assert got == {k: v for k, v in _gt_from_coco(coco / "annotations", scorer, set(ids)).items()}
    assert got[394444] == {"person", "horse"}  # horse comes from the caption, as in get_annotations()
    assert got[226988] == {"person", "dining table", "pizza"}
    cache = chair_gt.gt_cache_path(inst, caps, scorer)
    assert cache.is_file() and cache.parent.parent == cache_dir
    calls = []
    monkeypatch.setattr(chair_gt, "gt_from_coco_files", lambda *a: calls.append(a) or {})
    assert chair_gt.coco_gt(inst, caps, scorer, ids) == got and not calls  # served from the cache
    chair_gt._HASHES.clear()
    caps.write_text(caps.read_text().replace("horse", "zebra"))
    assert chair_gt.gt_cache_path(inst, caps, scorer) != cache  # new annotation content, new key
    monkeypatch.undo()
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(cache_dir))
    task = ChairTask(coco_root=str(coco), image_list="opera", n_images=4)
    assert [s["image_id"] for s in task.samples()] == [226988, 337443, 112022, 394444]
    assert task._gt[394444] == {"person", "zebra"}
    assert "CHAIR opera image list, 4 images" in task.data_source()


def test_mmhal_root(tmp_path):
    from halbench.tasks.data_roots import PACKAGED_MMHAL
    from halbench.tasks.mmhal import MMHalTask

    root = tmp_path / "MMHal-Bench"
    (root / "images").mkdir(parents=True)
    items = json.loads(PACKAGED_MMHAL.read_text())
    for it in items:
        (root / "images" / it["image_src"].rsplit("/", 1)[-1]).write_bytes(jpeg_bytes())
    task = MMHalTask(mmhal_root=str(root), judge="openai:gpt-4o@http://127.0.0.1:9")
    assert len(task.samples()) == 96 and Path(task.samples()[0]["image"]).parent == root / "images"
    assert task.data_files()[0] == PACKAGED_MMHAL  # no response_template.json in the root: the packaged copy
    (root / "response_template.json").write_text(json.dumps(items[:5]))
    task = MMHalTask(mmhal_root=str(root), judge="openai:gpt-4o@http://127.0.0.1:9")
    assert len(task.samples()) == 5 and "response_template.json" in task.data_source()
    (root / "images").rename(root / "imgs")
    with pytest.raises(DataError, match="images/"):
        MMHalTask(mmhal_root=str(root), judge="openai:gpt-4o@http://127.0.0.1:9")


# -- Hugging Face copies -----------------------------------------------------------------------------------------
def _write_parquet(path: Path, rows: dict, features: dict) -> Path:
    import datasets

    ds = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
    ds.to_parquet(str(path))
    return path


@pytest.fixture
def offline_hub(monkeypatch):
    """load_dataset(ID, CONFIG, split=...) reads tmp parquet files registered under ID; never the network."""
    datasets = pytest.importorskip("datasets", reason="the HF path needs `datasets` (the train/dev extras)")

    real, files = datasets.load_dataset, {}

    def load(path, name=None, split=None, revision=None, **kw):
        if path not in files:
            raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed")
        return real("parquet", data_files={split: str(files[path])}, split=split)

    monkeypatch.setattr(datasets, "load_dataset", load)
    return files


def pope_hf_rows(n_images: int = 2) -> dict:
    """lmms-lab/POPE's layout (README dataset_info): all strings except the embedded image."""
    rows = {k: [] for k in ("id", "question_id", "question", "answer", "image_source", "image", "category")}
    for split in ("adversarial", "popular", "random"):
        for i in range(n_images * 2):
            iid = 310196 + i // 2
            rows["id"].append(str(len(rows["id"])))
            rows["question_id"].append(str(i + 1))
            rows["question"].append(f"Is there a {'dog' if i % 2 else 'car'} in the image?")
            rows["answer"].append("yes" if i % 2 == 0 else "no")
            rows["image_source"].append(f"COCO_val2014_{iid:012d}")
            rows["image"].append({"bytes": jpeg_bytes(iid), "path": None})
            rows["category"].append(split)
    return rows


def test_pope_from_the_lmms_lab_layout(tmp_path, offline_hub, cache_dir):
    import datasets

    from halbench.tasks.pope import PopeTask

    f = {"id": datasets.Value("string"), "question_id": datasets.Value("string"),
         "question": datasets.Value("string"), "answer": datasets.Value("string"),
         "image_source": datasets.Value("string"), "image": datasets.Image(), "category": datasets.Value("string")}
    offline_hub["lmms-lab/POPE"] = _write_parquet(tmp_path / "test-00000-of-00001.parquet", pope_hf_rows(), f)
    task = PopeTask(data="hf:lmms-lab/POPE")
    s = task.samples()
    assert len(s) == 12 and s[0]["id"] == "adversarial/1" and s[0]["label"] == "yes"
    assert s[0]["question_id"] == 1 and s[0]["text"] == "Is there a car in the image?"
    img = Path(s[0]["image_path"])
    assert img.read_bytes() == jpeg_bytes(310196) and img.suffix == ".jpg"  # written byte for byte
    assert str(img).startswith(str(cache_dir / "hf_images" / "lmms-lab_POPE"))
    assert len({x["image_path"] for x in s}) == 2 and task.data_files() == []
    assert task.data_source() == "Hugging Face dataset lmms-lab/POPE (config default, split test), 12 questions"
    assert len(PopeTask("random", data="hf:lmms-lab/POPE").samples()) == 4
    bad = pope_hf_rows()
    bad["answer"][3] = "maybe"
    offline_hub["bad/POPE"] = _write_parquet(tmp_path / "bad.parquet", bad, f)
    with pytest.raises(DataError, match="row 3: answer must be yes or no"):
        PopeTask(data="hf:bad/POPE").samples()
    with pytest.raises(DataError, match="cannot load the dataset"):
        PopeTask(data="hf:nobody/none").samples()


def test_mmhal_from_an_hf_copy_with_embedded_images(tmp_path, offline_hub, cache_dir):
    import datasets

    from halbench.tasks.data_roots import PACKAGED_MMHAL
    from halbench.tasks.mmhal import MMHalTask

    items = json.loads(PACKAGED_MMHAL.read_text())[:8]
    keys = ("question_type", "question_topic", "image_id", "image_src", "question", "gt_answer")
    rows = {k: [it[k] for it in items] for k in keys}
    rows["image_content"] = [it["image_content"] for it in items]
    rows["image"] = [{"bytes": jpeg_bytes(i), "path": None} for i in range(8)]
    feats = {k: datasets.Value("string") for k in keys}
    feats.update(image_content=datasets.Sequence(datasets.Value("string")), image=datasets.Image())
    offline_hub["someone/MMHal-Bench"] = _write_parquet(tmp_path / "mmhal.parquet", rows, feats)
    task = MMHalTask(data="hf:someone/MMHal-Bench", judge="openai:gpt-4o@http://127.0.0.1:9")
    s = task.samples()
    assert [x["question"] for x in s] == [it["question"] for it in items]
    assert Path(s[2]["image"]).read_bytes() == jpeg_bytes(2) and s[2]["image_content"] == items[2]["image_content"]
    del rows["image"], feats["image"]
    offline_hub["noimg/MMHal"] = _write_parquet(tmp_path / "noimg.parquet", rows, feats)
    with pytest.raises(DataError, match="lacks column"):
        MMHalTask(data="hf:noimg/MMHal", judge="openai:gpt-4o@http://127.0.0.1:9").samples()
