"""Measure a built world against its quality targets (issue 3), through the public HF loading path.

Targets, on the world's validation split:
  * VLM grounded: object recall >= 0.75 on "Please describe this image in detail." (greedy);
  * VLM hallucinates for the right reason: CHAIRi in [0.10, 0.35], and >= half of hallucinated objects are
    among the TOP_PARTNERS most frequent COCO co-occurring partners of an object present in the image;
  * CLIP verifier: AUROC >= 0.95 for "is object X in this image" (cosine with "a photo of a X.");
  * POPE (halbench.tasks.pope_builder files in <world>/pope): accuracy adversarial < popular < random.
CHAIR mentions come from halbench.tasks.chair.ChairScorer (OPERA pipeline when NLTK's WordNet and tagger are
installed, else the 2018 pipeline; the world's captions use class names, so both agree); POPE answers are
parsed with halbench.tasks.pope.parse_answer (official rule). Models are loaded with AutoProcessor +
AutoModelForImageTextToText / CLIPModel from the world's directories, exactly as users load them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from halbench.world.cooccurrence import CooccurrenceTable, default_table

TOP_PARTNERS = 3
DETAIL_PROMPT = "Please describe this image in detail."


def load_vlm(vlm_dir: str | Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return (AutoModelForImageTextToText.from_pretrained(vlm_dir).eval(), AutoProcessor.from_pretrained(vlm_dir))


@torch.no_grad()
def generate(model, processor, images: list, prompts: list[str], max_new_tokens: int, batch: int = 32,
             desc: str = "generate") -> list[str]:
    """Greedy answers, batched, through the processor's chat template (left padding)."""
    out = []
    for s in tqdm(range(0, len(images), batch), desc=desc, leave=False):
        texts = [processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
            add_generation_prompt=True) for p in prompts[s:s + batch]]
        enc = processor(text=texts, images=images[s:s + batch], return_tensors="pt", padding=True)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        out += [t.strip() for t in processor.batch_decode(ids[:, enc.input_ids.shape[1]:], skip_special_tokens=True)]
    return out


def _scorer():
    from halbench.errors import NotAvailableError
    from halbench.tasks.chair import ChairScorer

    try:
        scorer = ChairScorer("coco2018", "opera")
        scorer.extract("a cup.")
        return scorer, "opera"
    except NotAvailableError:
        return ChairScorer("coco2018", "2018"), "2018"


def partner_sets(gt: dict[str, list[str]], table: CooccurrenceTable) -> dict[str, set[str]]:
    """Per image: the top TOP_PARTNERS COCO partners (by P(partner | object)) of each present object."""
    cond = table.conditional()
    out = {}
    for image_id, objs in gt.items():
        s: set[str] = set()
        for o in objs:
            order = np.argsort(-cond[table.index[o]], kind="stable")[:TOP_PARTNERS]
            s.update(table.categories[j] for j in order)
        out[image_id] = s - set(objs)
    return out


def chair_quality(captions: dict[str, str], gt: dict[str, list[str]], table: CooccurrenceTable) -> dict:
    scorer, pipeline = _scorer()
    partners = partner_sets(gt, table)
    n_ment = n_hal = n_gt = n_cov = n_cap_hal = hal_partner = 0
    chance, hal_cls, miss_cls, gt_cls = [], Counter(), Counter(), Counter()
    for image_id, cap in captions.items():
        r = scorer.score_caption(cap, set(gt[image_id]))
        hal_cls.update(r["hallucinated"])
        gt_cls.update(r["gt_objects"])
        miss_cls.update(set(r["gt_objects"]) - set(r["covered_gt_objects"]))
        n_ment += r["n_mentions"]
        n_hal += r["n_hallucinated"]
        n_gt += r["n_gt_objects"]
        n_cov += r["n_covered_gt_objects"]
        n_cap_hal += bool(r["n_hallucinated"])
        hal_partner += sum(h in partners[image_id] for h in r["hallucinated"])
        absent = [c for c in table.categories if c not in gt[image_id]]
        chance.append(len(partners[image_id]) / len(absent))
    return {
        "chair_pipeline": pipeline, "n_captions": len(captions), "recall": n_cov / max(n_gt, 1),
        "chair_i": n_hal / max(n_ment, 1), "chair_s": n_cap_hal / max(len(captions), 1),
        "n_mentions": n_ment, "n_hallucinated": n_hal,
        "hallucinated_among_top_partners": hal_partner / max(n_hal, 1),
        # what that share would be if hallucinated objects were drawn uniformly among absent classes
        "top_partners_chance": float(np.mean(chance)) if chance else float("nan"),
        "most_hallucinated": hal_cls.most_common(6),
        "least_recalled": sorted(((c, round(1 - miss_cls[c] / n, 3)) for c, n in gt_cls.items()),
                                 key=lambda x: x[1])[:6],
    }


def pope_quality(model, processor, world, batch: int = 32) -> dict:
    from halbench.images import load_image
    from halbench.tasks.pope import load_pope, parse_answer

    questions = load_pope(world.pope_dir)
    images = {q["image"]: load_image(Path(world.images_dir) / q["image"]) for q in questions}
    answers = generate(model, processor, [images[q["image"]] for q in questions], [q["text"] for q in questions],
                       max_new_tokens=4, batch=batch, desc="pope")
    out = {}
    for split in ("random", "popular", "adversarial"):
        rows = [(parse_answer(a), q["label"]) for a, q in zip(answers, questions) if q["split"] == split]
        if rows:
            out[f"pope_{split}_acc"] = float(np.mean([p == l for p, l in rows]))
            out[f"pope_{split}_yes_ratio"] = float(np.mean([p == "yes" for p, _ in rows]))
    out["pope_n_questions"] = len(questions)
    return out


def clip_quality(world, table: CooccurrenceTable) -> dict:
    from transformers import AutoProcessor, CLIPModel

    from halbench.images import load_image

    from halbench.world.clip_train import CLASS_PROMPT, auroc

    model, proc = CLIPModel.from_pretrained(world.clip_dir).eval(), AutoProcessor.from_pretrained(world.clip_dir)
    gt = json.loads(Path(world.gt_objects_json).read_text())
    ids = sorted(gt, key=int)
    with torch.no_grad():
        t = model.get_text_features(**proc(text=[CLASS_PROMPT.format(c) for c in table.categories],
                                          padding=True, return_tensors="pt")).pooler_output
        t = torch.nn.functional.normalize(t, dim=-1)
        scores = []
        for s in range(0, len(ids), 128):
            ims = [load_image(world.image_path(int(i))) for i in ids[s:s + 128]]
            v = model.get_image_features(**proc(images=ims, return_tensors="pt")).pooler_output
            scores.append((torch.nn.functional.normalize(v, dim=-1) @ t.T).numpy())
    labels = np.array([[c in gt[i] for c in table.categories] for i in ids])
    return {"clip_auroc": auroc(np.concatenate(scores), labels), "clip_n_pairs": int(labels.size)}


def measure(world, n_chair: int | None = None, pope: bool = True, batch: int = 32) -> dict:
    """All quality figures for a World; n_chair limits the CHAIR images (sorted ids)."""
    from halbench.images import load_image

    table = default_table()
    torch.manual_seed(0)
    model, processor = load_vlm(world.vlm_dir)
    gt = json.loads(Path(world.gt_objects_json).read_text())
    ids = sorted(gt, key=int)[:n_chair] if n_chair else sorted(gt, key=int)
    images = [load_image(world.image_path(int(i))) for i in ids]
    caps = generate(model, processor, images, [DETAIL_PROMPT] * len(ids), max_new_tokens=96, batch=batch,
                    desc="describe")
    result = chair_quality(dict(zip(ids, caps)), gt, table)
    result["examples"] = [{"image_id": int(i), "gt": gt[i], "caption": c} for i, c in list(zip(ids, caps))[:5]]
    if pope and Path(world.pope_dir).is_dir():
        result.update(pope_quality(model, processor, world, batch))
    result.update(clip_quality(world, table))
    return result


def targets_met(r: dict) -> dict[str, bool]:
    met = {
        "recall>=0.75": r["recall"] >= 0.75,
        "0.10<=chair_i<=0.35": 0.10 <= r["chair_i"] <= 0.35,
        "hallucinations_mostly_partners": r["hallucinated_among_top_partners"] >= 0.5,
        "clip_auroc>=0.95": r["clip_auroc"] >= 0.95,
    }
    if "pope_random_acc" in r:
        met["pope_adv<pop<rand"] = r["pope_adversarial_acc"] < r["pope_popular_acc"] < r["pope_random_acc"]
    return met
