"""Object statistics of the embedded world, derived once from real COCO 2014 annotations.

The table (halbench/world/data/cooccurrence.json, written by scripts/derive_cooccurrence.py from the
ground-truth object sets in ../shared/refdata/chair/gt, COCO annotations CC BY 4.0) holds, restricted to the
world's 32 categories: per-category image counts, pair counts, and every object set of 2-5 objects seen in at
least two COCO images with its count. Scenes are drawn from that empirical joint distribution, so object
frequencies and co-occurrences in the world are COCO's (what POPE's "popular" and "adversarial" negative
sampling assume).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from halbench.errors import DataError

TABLE_PATH = Path(__file__).parent / "data" / "cooccurrence.json"


class CooccurrenceTable:
    """Counts over COCO images: `counts[i]`, `pairs[i, j]`, and the empirical scene list."""

    def __init__(self, path: str | Path = TABLE_PATH):
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            self.categories: list[str] = list(raw["categories"])
            self.counts = np.asarray(raw["counts"], dtype=np.float64)
            self.pairs = np.asarray(raw["pair_counts"], dtype=np.float64)
            scenes = raw["scenes"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"cannot read co-occurrence table ({e})", path=path) from e
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.scene_sets = [tuple(s[1:]) for s in scenes]
        w = np.asarray([s[0] for s in scenes], dtype=np.float64)
        self.scene_p = w / w.sum()

    def sample_scene(self, rng: np.random.Generator) -> list[str]:
        """One object set drawn from COCO's empirical distribution, in random order."""
        objs = list(self.scene_sets[rng.choice(len(self.scene_sets), p=self.scene_p)])
        rng.shuffle(objs)
        return [self.categories[i] for i in objs]

    def conditional(self) -> np.ndarray:
        """P(column present | row present) over COCO images, (K, K), zero diagonal."""
        return self.pairs / np.maximum(self.counts[:, None], 1.0)

    def partner_scores(self, present: list[str]) -> np.ndarray:
        """Score of each category as an unmentioned companion: mean P(c | p) over present p; present -> 0."""
        idx = [self.index[p] for p in present]
        scores = self.conditional()[idx].mean(axis=0)
        scores[idx] = 0.0
        return scores

    def top_partners(self, present: list[str], k: int = 3) -> list[str]:
        """The k absent categories that co-occur most with the present ones in COCO."""
        scores = self.partner_scores(present)
        order = np.argsort(-scores, kind="stable")
        return [self.categories[i] for i in order[:k] if scores[i] > 0]


@lru_cache(maxsize=1)
def default_table() -> CooccurrenceTable:
    return CooccurrenceTable(TABLE_PATH)
