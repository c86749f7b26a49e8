"""halbench.world: co-occurrence table, renderer, captions, the --fast recipe end to end, and the shipped world."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from halbench.world import World, default_world  # noqa: E402
from halbench.world.captions import detailed_caption, noise_object, short_captions  # noqa: E402
from halbench.world.cooccurrence import default_table  # noqa: E402
from halbench.world.generate import generate_split  # noqa: E402
from halbench.world.render import GLYPHS, render_scene  # noqa: E402


@pytest.fixture(scope="module")
def table():
    return default_table()


@pytest.fixture(scope="module")
def fast_world(tmp_path_factory):
    """One --fast build shared by the end-to-end tests (the recipe's own code path, tiny settings)."""
    from click.testing import CliRunner

    from halbench.world.cli import world

    out = tmp_path_factory.mktemp("world") / "w"
    res = CliRunner().invoke(world, ["build", "--out", str(out), "--fast", "--seed", "3", "--threads", "1"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return World(out)


def test_table_is_coco_statistics(table):
    assert len(table.categories) >= 24 and len(set(table.categories)) == len(table.categories)
    assert np.allclose(table.pairs, table.pairs.T) and (np.diag(table.pairs) == 0).all()
    cond = table.conditional()
    # facts of COCO 2014: forks sit on dining tables, tennis rackets come with people, zebras rarely with cars
    assert cond[table.index["fork"], table.index["dining table"]] > 0.7
    assert cond[table.index["tennis racket"], table.index["person"]] > 0.9
    assert cond[table.index["zebra"], table.index["car"]] < 0.1
    rng = np.random.default_rng(0)
    scenes = [table.sample_scene(rng) for _ in range(2000)]
    assert all(2 <= len(s) <= 5 and len(set(s)) == len(s) for s in scenes)
    freq = Counter(o for s in scenes for o in s)
    assert freq.most_common(1)[0][0] == "person"  # as in COCO


def test_glyphs_distinct_and_render_reproducible(table):
    assert set(GLYPHS) == set(table.categories)
    looks = [(shape, col, tex, tcol) for shape, col, tex, tcol, _ in GLYPHS.values()]
    assert len(set(looks)) == len(looks)
    a, pa = render_scene(["pizza", "fork", "dining table"], np.random.default_rng(7))
    b, pb = render_scene(["pizza", "fork", "dining table"], np.random.default_rng(7))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8 and (a == b).all() and pa == pb
    for _, (x, y, w, h) in pa:
        assert 0 <= x and 0 <= y and x + w <= 48 and y + h <= 48 and w * h > 0


def test_caption_noise_names_absent_top_partner(table):
    rng = np.random.default_rng(0)
    objs, areas = ["fork", "pizza"], [100.0, 200.0]
    extra, strength = noise_object(objs, table)
    assert extra == "dining table" and strength > 0.7
    caps = [c for _ in range(200) for c in short_captions(objs, areas, table, rng, noise_scale=1.0)]
    noisy = [t for t, e in caps if e]
    assert all(e == "dining table" and "dining table" in t for t, e in caps if e)
    assert 0.6 < len(noisy) / len(caps) < 0.95  # ~P(table | fork) = 0.82
    assert all("fork" in t and "pizza" in t for t, _ in caps)
    clean = [detailed_caption(objs, areas, table, rng, noise_scale=0.0)[0] for _ in range(50)]
    assert not any("table" in t for t in clean)


def test_split_has_five_captions_and_reproduces():
    a, b = generate_split("val", 12, seed=1, progress=False), generate_split("val", 12, seed=1, progress=False)
    assert (a.images == b.images).all() and a.captions == b.captions
    assert all(len(c) == 5 for c in a.captions)
    assert generate_split("train", 3, seed=1, progress=False).image_ids[0] != a.image_ids[0]


def test_training_sequences_match_processor_template(fast_world, table):
    """The cached-feature trainer must see exactly the ids the processor + chat template produce."""
    from transformers import AutoProcessor

    from halbench.images import load_image
    from halbench.world.vlm_train import SequenceBuilder, VlmConfig

    proc = AutoProcessor.from_pretrained(fast_world.vlm_dir)
    split = generate_split("val", 4, seed=3, progress=False)
    builder = SequenceBuilder(proc.tokenizer, 36, table, VlmConfig())
    rng = np.random.default_rng(0)
    for i in range(4):
        turns = builder.turns(split, i, rng)
        ids, labels = builder.encode(turns)
        conv = []
        for k, (q, a) in enumerate(turns):
            image = [{"type": "image"}] if k == 0 else []
            conv.append({"role": "user", "content": image + [{"type": "text", "text": q}]})
            conv.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        text = proc.apply_chat_template(conv)
        img = load_image(fast_world.image_path(fast_world.image_ids()[0]))
        assert proc(text=text, images=img).input_ids[0] == ids
        assert sum(l != -100 for l in labels) > 0


def test_fast_world_data(fast_world):
    from pycocotools.coco import COCO

    coco = COCO(str(fast_world.instances_json))
    assert len(coco.getCatIds()) >= 24 and len(coco.getImgIds()) == 24
    caps = COCO(str(fast_world.captions_json))
    assert all(len(caps.getAnnIds(imgIds=i)) == 5 for i in caps.getImgIds())
    gt = json.loads(Path(fast_world.gt_objects_json).read_text())
    for image_id in coco.getImgIds():
        names = sorted({coco.cats[a["category_id"]]["name"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))})
        assert gt[str(image_id)] == names and len(names) >= 2
        assert fast_world.image_path(image_id).is_file()
    pope = sorted(p.name for p in Path(fast_world.pope_dir).glob("coco_pope_*.json"))
    assert pope == ["coco_pope_adversarial.json", "coco_pope_popular.json", "coco_pope_random.json"]
    train = fast_world.with_split("train")
    assert len(train.image_ids()) == 8 and set(train.image_ids()).isdisjoint(fast_world.image_ids())
    assert fast_world.info()["config"]["seed"] == 3


def test_fast_world_models_load_and_generate(fast_world):
    from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, CLIPModel

    from halbench.images import load_image

    img = load_image(fast_world.image_path(fast_world.image_ids()[0]))
    clip = AutoModel.from_pretrained(fast_world.clip_dir)
    assert isinstance(clip, CLIPModel)
    cproc = AutoProcessor.from_pretrained(fast_world.clip_dir)
    with torch.no_grad():
        out = clip(**cproc(text=["a photo of a cup.", "a photo of a dog."], images=[img], return_tensors="pt",
                           padding=True))
    assert out.logits_per_image.shape == (1, 2)
    vlm = AutoModelForImageTextToText.from_pretrained(fast_world.vlm_dir).eval()
    proc = AutoProcessor.from_pretrained(fast_world.vlm_dir)
    assert type(vlm).__name__ == "LlavaForConditionalGeneration"
    # its vision tower is the CLIP's
    assert torch.equal(vlm.model.vision_tower.embeddings.patch_embedding.weight,
                       clip.vision_model.embeddings.patch_embedding.weight)
    prompt = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                        "text": "Please describe this image in detail."}]}], add_generation_prompt=True)
    assert prompt == "USER: <image>\nPlease describe this image in detail. ASSISTANT:"
    enc = proc(text=[prompt], images=[img], return_tensors="pt")
    assert int((enc.input_ids == vlm.config.image_token_index).sum()) == 36  # (48/8)^2 patches, CLS dropped
    with torch.no_grad():
        ids = vlm.generate(**enc, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    assert ids.shape[1] == enc.input_ids.shape[1] + 5
    assert isinstance(proc.decode(ids[0, enc.input_ids.shape[1]:]), str)


def test_world_cli_info(fast_world):
    from click.testing import CliRunner

    from halbench.world.cli import world

    res = CliRunner().invoke(world, ["info", "--root", str(fast_world.root)])
    assert res.exit_code == 0, res.output
    assert "categories: 32" in res.output and "images:     24" in res.output


def test_world_errors(tmp_path):
    from halbench.errors import DataError

    with pytest.raises(DataError):
        World(tmp_path / "nope")
    (tmp_path / "instances_val.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match="no image with id 5"):
        World(tmp_path).image_path(5)


def test_shipped_default_world():
    w = default_world()
    assert (Path(w.vlm_dir) / "config.json").is_file() and (Path(w.clip_dir) / "config.json").is_file()
    ids = w.image_ids()
    assert len(ids) >= 200 and all(w.image_path(i).is_file() for i in ids[:20])
    assert len(w.categories()) >= 24
    assert sorted(p.name for p in Path(w.pope_dir).glob("coco_pope_*.json")) == [
        "coco_pope_adversarial.json", "coco_pope_popular.json", "coco_pope_random.json"]
    size = sum(p.stat().st_size for p in Path(w.root).rglob("*") if p.is_file())
    assert size < 16 * 2**20
