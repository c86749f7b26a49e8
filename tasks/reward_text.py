"""Text side of the reward analyses: BLEU / ROUGE-L against references, and sentence spans (the CHAIR
pipeline's Punkt splitter), so analysis 1 and analysis 2 see the same sentences (reward_analysis.py card)."""

from __future__ import annotations

from typing import Sequence


# -- text metrics ------------------------------------------------------------------------------------------
class TextMetrics:
    """BLEU-1..4 (sacrebleu) and ROUGE-L F (rouge-score) of one hypothesis against its references."""

    def __init__(self) -> None:
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import BLEU

        self._bleu = {n: BLEU(max_ngram_order=n, lowercase=True, tokenize="13a", smooth_method="exp",
                              effective_order=True) for n in range(1, 5)}
        self._rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

    def __call__(self, hyp: str, refs: Sequence[str]) -> dict[str, float]:
        out = {f"bleu{n}": b.sentence_score(hyp, list(refs)).score / 100 for n, b in self._bleu.items()}
        out["rougeL"] = self._rouge.score_multi(list(refs), hyp)["rougeL"].fmeasure
        return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the sentences of `text`, split by the CHAIR pipeline's Punkt splitter
    (halbench.tasks.chair_text.split_sentences), so both analyses see the same sentences."""
    from halbench.tasks.chair_text import split_sentences

    spans, cursor = [], 0
    for sent in split_sentences(text):
        start = text.find(sent, cursor)
        if start < 0:  # Punkt returns exact substrings; be safe if that ever changes
            continue
        spans.append((start, start + len(sent)))
        cursor = start + len(sent)
    return spans or [(0, len(text))]


def sentence_of(spans: list[tuple[int, int]], pos: int | None) -> int:
    """Index of the sentence containing character `pos` (the first sentence when the position is unknown)."""
    if pos is None:
        return 0
    return next((i for i, (a, b) in enumerate(spans) if a <= pos < b), len(spans) - 1)
