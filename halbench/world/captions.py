"""COCO-style captions for world images, with controlled co-occurrence noise.

Captions name objects by their COCO class names (so CHAIR's synonym lists resolve them exactly), largest
object first with a little jitter (people describe salient things first). A caption may also name one ABSENT
object, last: Y*, the category that co-occurs most with a present object in COCO, with probability
noise_scale * P_COCO(Y* | x) (capped at MAX_NOISE). So a fork without a table gets "dining table" in about
82% of its captions, a lone giraffe gets "person" in 23%. That noise is the language prior the VLM
picks up: where the prior is strong it names the object whether or not it is visible (greedy decoding picks
it once its probability passes the alternatives), i.e. it hallucinates for the reason large VLMs do.
"""

from __future__ import annotations

import numpy as np

from halbench.world.cooccurrence import CooccurrenceTable

SHORT_TEMPLATES = [
    "{A}.", "There is {l} in the picture.", "The image shows {l}.", "{L} can be seen in this image.",
    "A view of {l}.", "In this picture we see {l}.", "{A1} next to {rest}.", "{A1} with {rest}.",
    "A photo of {l}.", "This is a picture of {l}.",
]
DETAIL_TEMPLATES = [
    "The image shows {l}.", "In this image there is {l}.", "In the image, we can see {l}.",
    "This picture contains {l}.",
]
MAX_NOISE = 0.9


def article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def join_list(names: list[str]) -> str:
    """['cup', 'fork', 'bowl'] -> 'a cup, a fork and a bowl'."""
    phrases = [article(n) for n in names]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def salience_order(objects: list[str], areas: list[float], rng: np.random.Generator) -> list[str]:
    """Largest first, with multiplicative jitter so near-equal objects swap places."""
    keys = np.asarray(areas, dtype=np.float64) * rng.uniform(0.7, 1.3, len(objects))
    return [objects[i] for i in np.argsort(-keys, kind="stable")]


def noise_object(present: list[str], table: CooccurrenceTable) -> tuple[str | None, float]:
    """The absent object captions are tempted to name, and how strongly: (Y*, max_x P_COCO(Y* | x)).

    Y* is the absent category with the highest COCO conditional frequency given any present object x
    (a fork makes "dining table" likely: P = 0.82 in COCO).
    """
    idx = [table.index[p] for p in present]
    scores = table.conditional()[idx].max(axis=0)
    scores[idx] = 0.0
    j = int(np.argmax(scores))
    return (table.categories[j], float(scores[j])) if scores[j] > 0 else (None, 0.0)


def noise_probability(present: list[str], table: CooccurrenceTable, noise_scale: float) -> float:
    """Probability that one caption of this image names Y*: noise_scale * P_COCO(Y* | x), capped at MAX_NOISE."""
    return min(MAX_NOISE, noise_scale * noise_object(present, table)[1])


def with_noise(ordered: list[str], table: CooccurrenceTable, rng: np.random.Generator,
               noise_scale: float) -> tuple[list[str], str | None]:
    """With noise_probability, append Y* after the present objects (the least salient slot)."""
    extra, strength = noise_object(ordered, table)
    if extra is None or rng.random() >= min(MAX_NOISE, noise_scale * strength):
        return ordered, None
    return ordered + [extra], extra


def _fill(template: str, names: list[str]) -> str:
    l = join_list(names)
    rest = join_list(names[1:]) if len(names) > 1 else "nothing else"
    text = template.format(A=l, l=l, L=l, A1=article(names[0]), rest=rest)
    return text[0].upper() + text[1:]


def short_captions(objects: list[str], areas: list[float], table: CooccurrenceTable,
                   rng: np.random.Generator, n: int = 5, noise_scale: float = 1.0) -> list[tuple[str, str | None]]:
    """n COCO-style captions: (text, noise object or None). Each names every present object."""
    out = []
    for t in rng.choice(len(SHORT_TEMPLATES), size=n, replace=False):
        names, extra = with_noise(salience_order(objects, areas, rng), table, rng, noise_scale)
        template = SHORT_TEMPLATES[t] if len(names) > 1 else "{A}."
        out.append((_fill(template, names), extra))
    return out


def detailed_caption(objects: list[str], areas: list[float], table: CooccurrenceTable,
                     rng: np.random.Generator, noise_scale: float = 1.0) -> tuple[str, str | None]:
    """The answer to "Please describe this image in detail.": every object, biggest first, maybe one extra."""
    names, extra = with_noise(salience_order(objects, areas, rng), table, rng, noise_scale)
    head = DETAIL_TEMPLATES[int(rng.integers(len(DETAIL_TEMPLATES)))]
    if len(names) <= 2:
        return _fill(head, names), extra
    # split long lists into two sentences, as detailed answers do
    cut = int(rng.integers(1, len(names)))
    tail = f"There is also {join_list(names[cut:])}." if len(names) - cut == 1 else \
        f"There are also {join_list(names[cut:])}."
    return _fill(head, names[:cut]) + " " + tail, extra
