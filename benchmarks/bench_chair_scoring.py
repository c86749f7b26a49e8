"""Speed of CHAIR scoring on OPERA's 12 released caption files (6,000 captions, ~570k tokens).

    python benchmarks/bench_chair_scoring.py [--refdata ../shared/refdata] [--pipeline opera] [--baseline 10]

One ChairScorer scores every file: NLTK's tagger and WordNet load once, lemmas are cached per (word, POS),
and each file's CHAIR numbers are printed next to its speed. `--baseline N` also times N captions the way
OPERA's chair.py runs on NLTK <= 3.8.1, where every `nltk.pos_tag` call builds a new PerceptronTagger
(reloading the model), to show what the caching buys. Ends with a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refdata", default=str(REPO.parent / "shared" / "refdata"), help="shared refdata folder")
    p.add_argument("--pipeline", default="opera", choices=["opera", "2018"], help="CHAIR variant")
    p.add_argument("--baseline", type=int, default=10, help="captions to time with a tagger reload each (0: skip)")
    return p.parse_args()


def _baseline(captions: list[str]) -> float:
    """Captions/s with OPERA's per-caption work on old NLTK: new tagger + new lemmatizer per caption."""
    from nltk.stem import WordNetLemmatizer
    from nltk.tag.perceptron import PerceptronTagger

    from halbench.tasks.chair_text import OperaLemmatizer, word_tokenize

    t = time.perf_counter()
    for c in captions:
        tokens = word_tokenize(c.lower())
        tags = PerceptronTagger().tag(tokens)
        wnl = WordNetLemmatizer()
        [wnl.lemmatize(w, OperaLemmatizer.wordnet_pos(tag)) for w, tag in tags]
    return len(captions) / (time.perf_counter() - t)


def main() -> None:
    a = _args()
    nltk_dir = REPO.parent / "shared" / "nltk_data"
    if "NLTK_DATA" not in os.environ and nltk_dir.is_dir():
        os.environ["NLTK_DATA"] = str(nltk_dir)
    from halbench.tasks.chair import ChairScorer, chair_metrics, load_gt

    root = Path(a.refdata) / "chair"
    files = sorted((root / "opera_chair_eval_results").glob("*/*.jsonl"))
    if len(files) != 12:
        sys.exit(f"expected 12 OPERA caption files under {root}, found {len(files)}")
    rows = {f: [json.loads(line) for line in f.read_text().splitlines()] for f in files}
    t0 = time.perf_counter()
    gt = load_gt(root / "gt" / "coco2014_trainval_gt_objects_opera_style_part1of2.json",
                 image_ids={r["image_id"] for rs in rows.values() for r in rs})
    scorer = ChairScorer("coco2018", a.pipeline)
    setup = time.perf_counter() - t0
    print(f"setup (GT + tagger + WordNet): {setup:.1f}s")
    n, t_score = 0, 0.0
    for f, rs in rows.items():
        t = time.perf_counter()
        m = chair_metrics([scorer.score_caption(r["caption"], gt[r["image_id"]]) for r in rs])
        dt = time.perf_counter() - t
        n, t_score = n + len(rs), t_score + dt
        print(f"{f.parent.name + '/' + f.name:28s} CHAIRs {100 * m['chair_s']:5.1f} CHAIRi {100 * m['chair_i']:5.1f}"
              f"  {len(rs) / dt:7.1f} captions/s")
    rate = n / t_score
    ratio = ""
    if a.baseline:
        base = _baseline([r["caption"] for r in rows[files[0]][: a.baseline]])
        ratio = f"; per-caption tagger reload (OPERA on NLTK<=3.8.1): {base:.2f} captions/s, {rate / base:.0f}x slower"
    print(f"SUMMARY: {n} captions in {t_score:.1f}s = {rate:.0f} captions/s ({a.pipeline}; setup {setup:.1f}s){ratio}")


if __name__ == "__main__":
    main()
