"""MMHal-style templated questions over the embedded world, and the offline rule judge that rates answers.

Questions (built from the world's COCO-format instances: category + bbox per object, 64x64 images):
| type        | template                                                   | standard answer from          |
|-------------|------------------------------------------------------------|-------------------------------|
| attribute   | Is the {c} in the upper or the lower part of the image?   | bbox centre (single instance) |
| adversarial | What color is / Where is / What is next to the {absent}?   | an absent COCO companion      |
| comparison  | Which looks larger in the image, the {a} or the {b}?       | bbox areas (ratio >= 1.5)     |
| counting    | How many {c}s are there in the image?                      | instance count                |
| relation    | Is the {a} to the left or to the right of the {b}?         | bbox centres (gap >= 15%)     |
| existence   | Is there a {c} in the image?  (yes and no alternate)       | instances; "no" as above      |
| holistic    | Describe this image in detail.                             | all instances                 |
The absent object of adversarial and "no" existence questions is one of the 3 categories that co-occur most with
the present ones in COCO (the world's co-occurrence table), as POPE's adversarial split picks negatives.
MMHal's environment and "other" types (scene, text, reasoning) have no counterpart: the world has no scenes.

The rule judge (`rule_verdict`, id rule:mmhal-world@v1) reads each sample's structured answer and the response:
- correct: the response states the expected fact (yes/no by its first word or a negation; the first number for
  counting; left/right, upper/lower (top/bottom/above/below), or which object is named first as larger unless
  the response says "smaller"); wrong: it states another value.
- extra hallucination: it mentions a COCO object (refined synonym list, CHAIR's extractor) absent from the
  image; the object a question asks about is exempt (it is the subject of a denial or of the answer).
- rating, on MMHal's 0-6 scale: correct -> 5 (holistic: 5 if >= half the objects are named, else 4);
  correct + extra -> 2; wrong -> 0; no claim + extra -> 1; no claim -> 3.
What it can measure: factual errors on these closed-form questions and object hallucination against complete
ground truth. What it cannot: anything outside the templates (colors, actions, text, scenes, reasoning
quality: it never gives 6), paraphrases it does not parse ("a pair of" is not 2), negation scope ("no dog but
a cat" reads as a denial). Treat its scores as a sanity check of the pipeline, not as MMHal-Bench numbers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

RULE_VERSION = "1"
TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "existence", "holistic")
_ADVERSARIAL = ("What color is the {c} in the image?", "Where is the {c} in the image?",
                "What is next to the {c} in the image?")
NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_IRREGULAR = {"person": "people", "knife": "knives", "sheep": "sheep", "mouse": "mice"}


def plural(c: str) -> str:
    if c in _IRREGULAR:
        return _IRREGULAR[c]
    return c + ("es" if c.endswith(("s", "sh", "ch", "x")) else "s")


def article(c: str) -> str:
    return ("an " if c[0] in "aeiou" else "a ") + c


# -- question generation ------------------------------------------------------------------------------
def _scenes(instances: dict) -> list[dict]:
    names = {c["id"]: c["name"] for c in instances["categories"]}
    objs: dict[int, list] = {im["id"]: [] for im in instances["images"]}
    for a in instances["annotations"]:
        objs[a["image_id"]].append((names[a["category_id"]], a["bbox"]))
    return [{"image": im, "objects": objs[im["id"]]} for im in sorted(instances["images"], key=lambda m: m["id"])]


def _singles(scene: dict) -> dict[str, list[float]]:
    counts = Counter(c for c, _ in scene["objects"])
    return {c: b for c, b in scene["objects"] if counts[c] == 1}


def _q_attribute(scene, rng, _cats, _k):
    h = scene["image"]["height"]
    for c, (x, y, w, bh) in _singles(scene).items():
        cy = y + bh / 2
        if abs(cy - h / 2) > 0.12 * h:
            part = "upper" if cy < h / 2 else "lower"
            return (f"Is the {c} in the upper or the lower part of the image?",
                    f"The {c} is in the {part} part of the image.", {"kind": "choice", "answer": part, "object": c})


def _absent_partner(scene, rng, cats) -> str | None:
    """An absent object that often co-occurs with the present ones in COCO (POPE-adversarial style)."""
    from halbench.world.cooccurrence import default_table

    present = sorted({c for c, _ in scene["objects"]})
    table = default_table()
    partners = [c for c in table.top_partners([p for p in present if p in table.index], k=3) if c in cats]
    absent = partners or sorted(set(cats) - set(present))
    return absent[int(rng.integers(len(absent)))] if absent else None


def _q_adversarial(scene, rng, cats, k):
    c = _absent_partner(scene, rng, cats)
    if c:
        return (_ADVERSARIAL[k % 3].format(c=c), f"There is no {c} in the image.", {"kind": "absent", "object": c})


def _q_comparison(scene, rng, _cats, _k):
    singles = sorted(_singles(scene).items(), key=lambda cb: -cb[1][2] * cb[1][3])
    if len(singles) >= 2:
        (a, ba), (b, bb) = singles[0], singles[-1]
        if ba[2] * ba[3] >= 1.5 * bb[2] * bb[3]:
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            return (f"Which looks larger in the image, the {first} or the {second}?",
                    f"The {a} looks larger than the {b}.", {"kind": "larger", "answer": a, "other": b})


def _q_counting(scene, rng, _cats, _k):
    counts = Counter(c for c, _ in scene["objects"])
    if counts:
        c, n = max(sorted(counts.items()), key=lambda cn: cn[1])
        verb, noun = ("is", c) if n == 1 else ("are", plural(c))
        word = next((w for w, v in NUMBERS.items() if v == n), str(n))
        return (f"How many {plural(c)} are there in the image?", f"There {verb} {word} {noun} in the image.",
                {"kind": "count", "answer": n, "object": c})


def _q_relation(scene, rng, _cats, _k):
    w = scene["image"]["width"]
    singles = sorted(_singles(scene).items())
    for i, (a, ba) in enumerate(singles):
        for b, bb in singles[i + 1:]:
            dx = (ba[0] + ba[2] / 2) - (bb[0] + bb[2] / 2)
            if abs(dx) >= 0.15 * w:
                side = "left" if dx < 0 else "right"
                return (f"Is the {a} to the left or to the right of the {b}?",
                        f"The {a} is to the {side} of the {b}.", {"kind": "choice", "answer": side, "object": a})


def _q_existence(scene, rng, cats, k):
    present = sorted({c for c, _ in scene["objects"]})
    c = None if k % 2 == 0 else _absent_partner(scene, rng, cats)
    if c is None:
        c = present[int(rng.integers(len(present)))]
        return (f"Is there {article(c)} in the image?", f"Yes, there is {article(c)} in the image.",
                {"kind": "yesno", "answer": "yes", "object": c})
    return (f"Is there {article(c)} in the image?", f"No, there is no {c} in the image.",
            {"kind": "yesno", "answer": "no", "object": c})


def _q_holistic(scene, _rng, _cats, _k):
    counts = Counter(c for c, _ in scene["objects"])
    parts = [article(c) if n == 1 else f"{n} {plural(c)}" for c, n in sorted(counts.items())]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ("Describe this image in detail.", f"The image shows {listing}.", {"kind": "describe"})


_MAKERS = {"attribute": _q_attribute, "adversarial": _q_adversarial, "comparison": _q_comparison,
           "counting": _q_counting, "relation": _q_relation, "existence": _q_existence, "holistic": _q_holistic}


def build_questions(instances: dict, n: int = 96, seed: int = 0) -> list[dict[str, Any]]:
    """n questions, types in turn (TYPES), each on the next image (seeded order) that supports the type."""
    scenes = [s for s in _scenes(instances) if s["objects"]]
    cats = sorted(c["name"] for c in instances["categories"])
    rng = np.random.default_rng(seed)
    order = [scenes[i] for i in rng.permutation(len(scenes))]
    out, cursor, per_type = [], 0, Counter()
    for i in range(n):
        qtype = TYPES[i % len(TYPES)]
        for step in range(len(order)):
            scene = order[(cursor + step) % len(order)]
            made = _MAKERS[qtype](scene, rng, cats, per_type[qtype])
            if made:
                cursor += step + 1
                break
        else:
            continue  # no image supports this type (tiny worlds)
        per_type[qtype] += 1
        question, answer, facts = made
        out.append({"index": len(out), "question_type": qtype, "question_topic": "world",
                    "image_id": scene["image"]["id"], "file_name": scene["image"]["file_name"],
                    "image_content": sorted({c for c, _ in scene["objects"]}), "question": question,
                    "gt_answer": answer, "facts": facts})
    return out


def world_samples(n: int = 96, seed: int = 0, world=None) -> list[dict[str, Any]]:
    """The MMHal-style samples of a world (default: the embedded one), with image paths and ids."""
    if world is None:
        from halbench.world import default_world

        world = default_world()
    instances = json.loads(Path(world.instances_json).read_text())
    out = []
    for q in build_questions(instances, n, seed):
        out.append({"id": f"world_mmhal_{q['index']:03d}", **q, "image": str(world.image_path(q["image_id"]))})
    return out


# -- the rule judge -------------------------------------------------------------------------------------
_NEG = re.compile(r"\b(no|not|none|never|cannot|nothing|without|absent|unable)\b|n't\b", re.I)
_SIDES = {"left": ("left",), "right": ("right",), "upper": ("upper", "top", "above", "up"),
          "lower": ("lower", "bottom", "below", "down")}
_OPPOSITE = {"left": "right", "right": "left", "upper": "lower", "lower": "upper"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", text.lower())


def _claim_yes_no(text: str) -> str | None:
    words = _words(text)
    if words and words[0] in ("yes", "no"):
        return words[0]
    if _NEG.search(text):
        return "no"
    return "yes" if re.search(r"\b(yes|there (is|are)|i can see|visible)\b", text.lower()) else None


def _claim_number(text: str) -> int | None:
    for w in _words(text):
        if w.isdigit():
            return int(w)
        if w in NUMBERS:
            return NUMBERS[w]
    return 0 if re.search(r"\bthere (is|are) no\b|^\s*no\b|\bnone\b", text.lower()) else None


def _claim_side(text: str, expected: str) -> str | None:
    words = _words(text)
    firsts = {side: min((words.index(w) for w in _SIDES[side] if w in words), default=None)
              for side in (expected, _OPPOSITE[expected])}
    found = {s: i for s, i in firsts.items() if i is not None}
    return min(found, key=found.get) if found else None


def _claim_larger(mentions: list, facts: dict) -> str | None:
    order = [m.cls for m in mentions if m.cls in (facts["answer"], facts["other"])]
    return order[0] if order else None


def _mentions(text: str) -> list:
    from halbench.tasks.object_halbench import refined_scorer

    return refined_scorer().extract(text)


def judge_facts(facts: dict, response: str, gt: list[str]) -> tuple[bool, bool, set[str]]:
    """(correct, wrong, extra hallucinated classes) for one response; see the module docstring."""
    mentions = _mentions(response)
    kind = facts["kind"]
    if kind == "describe":
        claim, correct_value = None, None
        correct = any(m.cls in gt for m in mentions)
        wrong = False
    else:
        if kind == "yesno":
            claim = _claim_yes_no(response)
        elif kind == "absent":
            claim, facts = ("no" if _NEG.search(response) else "yes"), {**facts, "answer": "no"}
        elif kind == "count":
            claim = _claim_number(response)
        elif kind == "choice":
            claim = _claim_side(response, facts["answer"])
        else:  # larger
            claim = _claim_larger(mentions, facts)
            low = response.lower()
            if claim and re.search(r"\bsmaller|\bless\b", low) and not re.search(r"\blarger|\bbigger", low):
                claim = facts["other"] if claim == facts["answer"] else facts["answer"]
        correct_value = facts["answer"]
        correct, wrong = claim == correct_value, claim is not None and claim != correct_value
    exempt = {facts.get("object")}
    extra = {m.cls for m in mentions if m.cls not in gt and m.cls not in exempt}
    return correct, wrong, extra


def rating_of(correct: bool, wrong: bool, extra: bool, coverage: float = 1.0) -> int:
    if wrong:
        return 0
    if correct:
        return 2 if extra else (5 if coverage >= 0.5 else 4)
    return 1 if extra else 3


def rule_verdict(request) -> str:
    """The rule judge's reply ("Rating: N, why") for a JudgeRequest built by MMHalTask on a world sample."""
    sample, response = request.fields["sample"], request.fields["response"]
    gt = list(sample["image_content"])
    correct, wrong, extra = judge_facts(sample["facts"], response, gt)
    coverage = 1.0
    if sample["facts"]["kind"] == "describe":
        named = {m.cls for m in _mentions(response)} & set(gt)
        coverage = len(named) / max(1, len(gt))
    why = [("states the standard answer" if correct else "contradicts the standard answer" if wrong
            else "does not state the standard answer")]
    if extra:
        why.append("mentions objects not in the image: " + ", ".join(sorted(extra)))
    return f"Rating: {rating_of(correct, wrong, bool(extra), coverage)}, " + "; ".join(why)
