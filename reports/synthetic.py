"""Synthetic run directories for report tests, the report benchmark and demos.

They follow the halbench.runs layout (config.yaml, results.json, samples/<task>.jsonl, artifacts/<task>/) and
the per-task record fields of docs/TEAM.md exactly. results.json metrics are computed here with plain loops,
independently of reports/kinds.py, so a report test compares two implementations. `paired_runs` makes a base
and a "trained" run over the same samples whose answers are correlated (same seeds per sample), so some POPE
answers flip each way, some CHAIR hallucinations appear and others disappear, and MMHal ratings move.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from halbench.runs import RunDir, atomic_write_json

CLASSES = ["person", "dog", "cat", "car", "bicycle", "bench", "chair", "dining table", "cup", "bottle", "bowl",
           "clock", "couch", "bed", "laptop", "cell phone", "book", "vase", "umbrella", "handbag"]
SURFACE = {"person": "man", "dining table": "table", "cell phone": "phone"}  # word as written in captions
MMHAL_TYPES = ["attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other"]
#: text that would run script or become markup if the report ever treated data as HTML
HOSTILE = ('<script>window.__pwned=1;document.title="PWNED"</script>'
           '<img src=x onerror="window.__pwned=2;document.title=\'PWNED\'">'
           '<a href="javascript:window.__pwned=3">click me</a> </script><!-- \u2028 & &amp;')
DIRECTIONS = {
    "pope": {"accuracy": "higher", "precision": "higher", "recall": "higher", "f1": "higher", "yes_ratio": "none"},
    "chair": {"chair_s": "lower", "chair_i": "lower", "recall": "higher", "len": "none"},
    "mmhal": {"avg_score": "higher", "hallucination_rate": "lower"},
    "reward_analysis": {"mean_sentence_reward": "higher", "n_objects": "none"},
}


def make_images(folder: Path, n: int, seed: int = 0, size: int = 64) -> list[str]:
    """n small PNGs of coloured boxes; returns their paths."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = random.Random(seed), []
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            x, y = rng.randrange(size - 8), rng.randrange(size - 8)
            draw.rectangle([x, y, x + rng.randrange(6, 30), y + rng.randrange(6, 30)],
                           fill=tuple(rng.randrange(256) for _ in range(3)))
        path = folder / f"img_{i:05d}.png"
        im.save(path)
        paths.append(str(path))
    return paths


def _err(sid: str, prompt: str, image: str | None) -> dict[str, Any]:
    return {"id": sid, "prompt": prompt, "image": image, "response": "",
            "error": "generation failed: CUDA out of memory"}


def pope_records(n: int, skill: float, seed: int, images: list[str], shift: int = 0) -> list[dict[str, Any]]:
    """POPE records; `seed` fixes questions, `shift` re-draws a fifth of the answers (another model)."""
    out = []
    for i in range(n):
        q = random.Random(seed * 1_000_003 + i)  # per-sample stream: same question in every run
        split, obj, label = q.choice(["random", "popular", "adversarial"]), q.choice(CLASSES), q.choice(["yes", "no"])
        u, image = q.random(), images[i % len(images)] if images else None
        if shift and random.Random(shift * 7919 + i).random() < 0.2:
            u = random.Random(shift * 104729 + i).random()
        sid, prompt = f"pope-{i}", f"Is there a {obj} in the image?"
        if u > 0.995:
            out.append(_err(sid, prompt, image))
            continue
        pred = "other" if u > 0.98 else label if u < skill else ("no" if label == "yes" else "yes")
        response = {"yes": f"Yes, there is a {obj}.", "no": "No.", "other": "I cannot tell from this picture."}[pred]
        out.append({"id": sid, "prompt": prompt, "image": image, "response": response, "error": None,
                    "question_id": i, "split": split, "label": label, "pred": pred, "correct": pred == label,
                    "image_id": i % max(1, len(images))})
    return out


def chair_caption(objs: list[tuple[str, bool]], q: random.Random, filler: int) -> tuple[str, list[str], list]:
    """(caption, surface words, [start, end] of each word in the caption)."""
    text, words, spans = "", [], []
    for cls, _ in objs:
        word = SURFACE.get(cls, cls)
        sentence = q.choice(["There is a {} in the scene. ", "A {} can be seen near the center. ",
                             "On the left there is a {}. "])
        start = len(text) + sentence.index("{}")
        words.append(word)
        spans.append([start, start + len(word)])
        text += sentence.format(word)
    text += "The lighting is soft and the colours are muted. " * filler
    return text.strip(), words, spans


def chair_records(n: int, hal_rate: float, seed: int, images: list[str], shift: int = 0,
                  filler: int = 1) -> list[dict[str, Any]]:
    """Records shaped like tasks/chair.py ChairScorer.score_caption's (TEAM.md fields plus counts/spans)."""
    out = []
    for i in range(n):
        q = random.Random(seed * 1_000_003 + i)
        gt = q.sample(CLASSES, q.randint(2, 5))
        r = random.Random(shift * 7919 + i) if shift and random.Random(shift + i).random() < 0.5 else q
        objs = [(c, False) for c in r.sample(gt, min(len(gt), r.randint(1, 3)))]
        if r.random() < hal_rate:
            objs.append((r.choice([c for c in CLASSES if c not in gt]), True))
        if r.random() < 0.3:
            objs.append(objs[0])  # repeated mention, counted twice as the official code does
        caption, words, spans = chair_caption(objs, r, filler)
        image = images[i % len(images)] if images else None
        hal = [c for c, h in objs if h]
        correct = [c for c, h in objs if not h]
        out.append({"id": f"chair-{i}", "prompt": "Please describe this image in detail.", "image": image,
                    "response": caption, "error": None, "image_id": i, "caption": caption,
                    "mentioned": [c for c, _ in objs], "words": words, "mention_spans": spans,
                    "hallucinated": hal, "hallucinated_words": [w for w, (_, h) in zip(words, objs) if h],
                    "correct_mentions": correct, "gt_objects": sorted(gt), "covered_gt_objects": sorted(set(correct)),
                    "n_words": len(caption.split()), "n_mentions": len(objs), "n_hallucinated": len(hal),
                    "n_gt_objects": len(gt), "n_covered_gt_objects": len(set(correct))})
    return out


def mmhal_records(n: int, mean: float, seed: int, images: list[str], shift: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        q = random.Random(seed * 1_000_003 + i)
        qtype = MMHAL_TYPES[i % len(MMHAL_TYPES)]
        r = random.Random(shift * 7919 + i) if shift and random.Random(shift + i).random() < 0.5 else q
        rating = None if r.random() < 0.03 else max(0, min(6, round(r.gauss(mean, 1.5))))
        out.append({"id": f"mmhal-{i}", "prompt": f"What is unusual about object {i}?",
                    "image": images[i % len(images)] if images else None, "response": f"Answer {i}: it is red.",
                    "error": None, "question_type": qtype, "question_topic": f"topic-{i % 12}", "rating": rating,
                    "hallucination": None if rating is None else rating < 3,
                    "judge_text": "" if rating is None else f"The answer is partly supported.\nRating: {rating}",
                    "judge_model": "rule:mmhal", "judge_error": "judge timed out" if rating is None else None})
    return out


def reward_records(n: int, seed: int) -> list[dict[str, Any]]:
    out, q = [], random.Random(seed)
    for i in range(n):
        objs = []
        for cls in q.sample(CLASSES, 3):
            hal = q.random() < 0.3
            objs.append({"word": SURFACE.get(cls, cls), "cls": cls, "hallucinated": hal,
                         "token_reward": round(q.gauss(0.2 if hal else 0.5, 0.15), 4)})
        sent = round(sum(o["token_reward"] for o in objs) / 3, 4)
        for o in objs:
            o["sentence_reward"] = sent
        out.append({"id": f"rw-{i}", "prompt": "Describe the image.", "image": None, "response": "", "error": None,
                    "image_id": i, "caption": " and ".join(o["word"] for o in objs), "sentence_reward": sent,
                    "objects": objs})
    return out


def metrics_for(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The task's aggregate, written out plainly (independent of reports/kinds.py)."""
    ok = [r for r in records if r.get("error") is None]
    m: dict[str, Any] = {"n_samples": len(records), "n_errors": len(records) - len(ok)}
    if name == "pope":
        tp = sum(1 for r in ok if r["pred"] == "yes" and r["label"] == "yes")
        p = tp / max(1, sum(1 for r in ok if r["pred"] == "yes"))
        rc = tp / max(1, sum(1 for r in ok if r["label"] == "yes" and r["pred"] != "other"))
        m |= {"accuracy": sum(r["correct"] for r in ok) / len(ok), "precision": p, "recall": rc,
              "f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
              "yes_ratio": sum(r["pred"] == "yes" for r in ok) / len(ok)}
    elif name in ("chair", "object_halbench"):
        m |= {"chair_s": sum(1 for r in ok if r["hallucinated"]) / len(ok),
              "chair_i": sum(len(r["hallucinated"]) for r in ok) / max(1, sum(len(r["mentioned"]) for r in ok)),
              "recall": sum(len(set(r["correct_mentions"])) for r in ok)
              / max(1, sum(len(r["gt_objects"]) for r in ok)),
              "len": sum(r["n_words"] for r in ok) / len(ok)}
    elif name == "mmhal":
        rated = [r for r in ok if r["rating"] is not None]
        m |= {"avg_score": sum(r["rating"] for r in rated) / len(rated),
              "hallucination_rate": sum(r["hallucination"] for r in rated) / len(rated)}
    elif name == "custom_vqa":
        m |= {"exact_match": sum(r["match"] for r in ok) / len(ok)}
    elif name == "reward_analysis":
        m |= {"mean_sentence_reward": sum(r["sentence_reward"] for r in ok) / len(ok),
              "n_objects": sum(len(r["objects"]) for r in ok)}
    return m


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """The RecordWriter line format, written in one go (RecordWriter fsyncs every line: slow for 10k rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), encoding="utf-8")


def write_run(path: Path, tasks: dict[str, tuple[str, list[dict[str, Any]]]], *, model_id: str, fingerprint: str,
              created: str = "2025-01-01T00:00:00+00:00", extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """A run dir: tasks {key: (task name, records)}; `extra` {key: dict merged into that task's entry}."""
    rd = RunDir(path)
    rd.path.mkdir(parents=True, exist_ok=True)
    config = {"model": model_id, "tasks": list(tasks), "seed": 0}
    rd.write_config(config)
    entries = {}
    for key, (name, records) in tasks.items():
        _write_jsonl(rd.samples_path(key), records)
        metrics = metrics_for(name, records)
        entries[key] = {"task": {"name": name, "variant": "default", "version": "1", "options": {}},
                        "metrics": metrics, "directions": DIRECTIONS.get(name, {}),
                        "n_samples": metrics["n_samples"], "n_errors": metrics["n_errors"],
                        "fingerprints": {"data": {f"{name}.jsonl": "0123456789abcdef"}, "prompts": "fedcba9876543210"}}
        entries[key] |= (extra or {}).get(key, {})
    atomic_write_json(rd.results_path, {
        "halbench_version": "0.1.0", "created": created,
        "model": {"backend": "hf", "model_id": model_id, "fingerprint": fingerprint, "capabilities": ["generate"]},
        "tasks": entries, "environment": {"git_commit": "0000000", "python": "3.11", "platform": "linux",
                                          "libraries": {"torch": "2.x"}},
        "seed": 0, "config": config})
    return rd.path


def write_training(folder: Path, steps: int = 40, failed: bool = False, seed: int = 0) -> Path:
    """OUT/train: metrics.jsonl (DPO-style curves) and status.json."""
    q = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(1, steps + 1):
        margin = 0.05 * s + q.gauss(0, 0.05)
        rows.append({"step": s, "loss": 0.69 / (1 + 0.05 * s) + q.gauss(0, 0.01), "rewards/chosen": margin / 2,
                     "rewards/rejected": -margin / 2, "rewards/margins": margin, "kl": 0.002 * s, "lr": 5e-6})
    _write_jsonl(folder / "metrics.jsonl", rows)
    status = {"status": "failed", "error": "RuntimeError: loss is NaN at step 41", "checkpoint": None} if failed \
        else {"status": "ok", "error": None, "checkpoint": str(folder.parent / "checkpoint")}
    atomic_write_json(folder / "status.json", status)
    return folder


def _custom_records(n: int, seed: int) -> list[dict[str, Any]]:
    """Records of a task the report does not know (rendered generically)."""
    q = random.Random(seed)
    return [{"id": f"vqa-{i}", "prompt": f"Question {i}?", "image": None, "response": "blue", "error": None,
             "match": q.random() < 0.6} for i in range(n)]


def _bar_png(path: Path, values: list[float]) -> None:
    """A small bar-chart PNG standing in for a matplotlib artifact of the reward-analysis task."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (160, 90), "white")
    draw = ImageDraw.Draw(im)
    for i, v in enumerate(values):
        draw.rectangle([10 + i * 18, 85 - int(70 * v), 22 + i * 18, 85], fill=(0, 114, 178))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def paired_runs(root: Path, n: int = 40, n_images: int = 8, seed: int = 0, tasks=("pope", "chair", "mmhal"),
                filler: int = 1, extra_tasks: bool = False) -> tuple[Path, Path]:
    """OUT/base and OUT/trained over the same samples; the trained run hallucinates less.

    extra_tasks adds reward_analysis (with a PNG artifact) and "custom_vqa", a task the report does not know.
    """
    images = make_images(root / "images", n_images, seed) if n_images else []
    makers = {
        "pope": lambda shift, good: pope_records(n, 0.8 if good else 0.7, seed, images, shift),
        "chair": lambda shift, good: chair_records(n, 0.2 if good else 0.45, seed, images, shift, filler),
        "mmhal": lambda shift, good: mmhal_records(n, 3.4 if good else 2.8, seed, images, shift),
    }
    paths = []
    for label, shift, good, model, fp in (("base", 0, False, "tiny-llava", "aaaa1111"),
                                          ("trained", seed + 1, True, "tiny-llava+dpo", "bbbb2222")):
        tasks_ = {t: (t, makers[t](shift, good)) for t in tasks}
        extra = {}
        if extra_tasks:
            tasks_["reward_analysis"] = ("reward_analysis", reward_records(max(4, n // 4), seed + shift))
            tasks_["custom_vqa"] = ("custom_vqa", _custom_records(max(4, n // 4), seed + shift))
            extra = {"reward_analysis": {"artifacts": {"reward histogram": "hist.png"}},
                     "custom_vqa": {"directions": {"exact_match": "higher"}}}
        path = write_run(root / label, tasks_, model_id=model, fingerprint=fp, extra=extra)
        if extra_tasks:
            _bar_png(path / "artifacts" / "reward_analysis" / "hist.png", [0.2, 0.5, 0.9, 0.6, 0.3] if good else
                     [0.4, 0.7, 0.5, 0.3, 0.2])
        paths.append(path)
    return paths[0], paths[1]


def hostile_runs(root: Path) -> tuple[Path, Path, Path]:
    """base and trained runs plus a failed training whose every free-text field (prompts, responses,
    captions, judge text, split and question-type names, model id, run folder name, task key, metric name,
    artifact label, training error) carries markup and script: for the report's safety tests."""
    images = make_images(root / "img", 2)
    runs = []
    for i, name in enumerate(["evil<b>base", "evil<img src=x onerror=alert(1)>"]):
        pope = pope_records(12, 0.6 + 0.3 * i, 0, images, shift=i)
        chair = chair_records(8, 0.5 - 0.4 * i, 0, images, shift=i)
        mmhal = mmhal_records(8, 3.0 + i, 0, images, shift=i)
        for r in pope + chair + mmhal:
            r["prompt"] = r["response"] = HOSTILE + r.get("prompt", "")
        for r in pope:
            r["split"] = HOSTILE  # becomes a filter option
        for r in chair:
            r["caption"] = HOSTILE + " " + r["caption"]
            r["gt_objects"] = r["gt_objects"] + [HOSTILE]
        for r in mmhal:
            r["judge_text"], r["judge_model"], r["question_type"] = HOSTILE, HOSTILE, HOSTILE
            r["judge_error"] = HOSTILE if r["rating"] is None else None
        key = HOSTILE[:20]  # a task key (and samples file name) with markup in it
        runs.append(write_run(root / name, {"pope": ("pope", pope), "chair": ("chair", chair),
                                            "mmhal": ("mmhal", mmhal), key: ("evil", [])},
                              model_id=HOSTILE, fingerprint=HOSTILE,
                              extra={"pope": {"artifacts": {HOSTILE: "x.png"}},
                                     key: {"metrics": {HOSTILE: 1.5}, "directions": {HOSTILE: "higher"}}}))
    train = write_training(root / "train", steps=3, failed=True)
    (train / "status.json").write_text(json.dumps({"status": "failed", "error": HOSTILE, "checkpoint": None}))
    return runs[0], runs[1], train
