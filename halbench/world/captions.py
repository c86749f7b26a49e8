"""COCO-style captions for world images, with controlled co-occurrence noise.

Captions name objects by their COCO class names (so CHAIR's synonym lists resolve them exactly), largest
object first with a little jitter (people describe salient things first). With probability `noise_rate` a
caption also names one ABSENT object drawn from the top co-occurring partners of the present ones (weights:
COCO conditional frequencies). That noise is the language prior the VLM picks up: it learns that a fork makes
"dining table" likely even when no table is visible, and hallucinates it for that reason.
"""

from __future__ import annotations

import numpy as np

from .cooccurrence import CooccurrenceTable

SHORT_TEMPLATES = [
    "{A}.", "There is {l} in the picture.", "The image shows {l}.", "{L} can be seen in this image.",
    "A view of {l}.", "In this picture we see {l}.", "{A1} next to {rest}.", "{A1} with {rest}.",
    "A photo of {l}.", "This is a picture of {l}.",
]
DETAIL_TEMPLATES = [
    "The image shows {l}.", "In this image there is {l}.", "In the image, we can see {l}.",
    "This picture contains {l}.",
]
NOISE_TOP_K = 3


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


def noise_object(present: list[str], table: CooccurrenceTable, rng: np.random.Generator) -> str | None:
    """An absent object among the top co-occurring partners, weighted by COCO conditional frequency."""
    scores = table.partner_scores(present)
    top = np.argsort(-scores, kind="stable")[:NOISE_TOP_K]
    w = scores[top]
    if w.sum() <= 0:
        return None
    return table.categories[int(rng.choice(top, p=w / w.sum()))]


def with_noise(ordered: list[str], table: CooccurrenceTable, rng: np.random.Generator,
               noise_rate: float) -> tuple[list[str], str | None]:
    """Insert an absent co-occurring object (probability noise_rate) into the second half of the list."""
    if rng.random() >= noise_rate:
        return ordered, None
    extra = noise_object(ordered, table, rng)
    if extra is None:
        return ordered, None
    pos = int(rng.integers(len(ordered) // 2 + 1, len(ordered) + 1))
    return ordered[:pos] + [extra] + ordered[pos:], extra


def _fill(template: str, names: list[str]) -> str:
    l = join_list(names)
    rest = join_list(names[1:]) if len(names) > 1 else "nothing else"
    text = template.format(A=l, l=l, L=l, A1=article(names[0]), rest=rest)
    return text[0].upper() + text[1:]


def short_captions(objects: list[str], areas: list[float], table: CooccurrenceTable,
                   rng: np.random.Generator, n: int = 5, noise_rate: float = 0.2) -> list[tuple[str, str | None]]:
    """n COCO-style captions: (text, noise object or None). Each names every present object."""
    out = []
    for t in rng.choice(len(SHORT_TEMPLATES), size=n, replace=False):
        names, extra = with_noise(salience_order(objects, areas, rng), table, rng, noise_rate)
        template = SHORT_TEMPLATES[t] if len(names) > 1 else "{A}."
        out.append((_fill(template, names), extra))
    return out


def detailed_caption(objects: list[str], areas: list[float], table: CooccurrenceTable,
                     rng: np.random.Generator, noise_rate: float = 0.2) -> tuple[str, str | None]:
    """The answer to "Please describe this image in detail.": every object, biggest first, maybe one extra."""
    names, extra = with_noise(salience_order(objects, areas, rng), table, rng, noise_rate)
    head = DETAIL_TEMPLATES[int(rng.integers(len(DETAIL_TEMPLATES)))]
    if len(names) <= 2:
        return _fill(head, names), extra
    # split long lists into two sentences, as detailed answers do
    cut = int(rng.integers(1, len(names)))
    tail = f"There is also {join_list(names[cut:])}." if len(names) - cut == 1 else \
        f"There are also {join_list(names[cut:])}."
    return _fill(head, names[:cut]) + " " + tail, extra
