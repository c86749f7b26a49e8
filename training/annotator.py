"""The online-DPO annotator of the BDHS study: a pairwise comparison of two responses by an MLLM.

Source: Amirloo et al. 2024 (arXiv 2407.02477), online DPO: the annotator (LLaVA-1.6-34B by default, 7B
also tried) sees the image, the question and two responses, and answers which response is better (less
hallucination, more helpful information, concise, no details that are not clearly visible) and why --
Table 14's prompt, paraphrased below (the exact wording is not reproduced). Pairwise, not a pointwise
score. The paper found no position bias and no change from adding the ground truth to the prompt.

- Any halbench judge spec: `openai:MODEL@URL` (an OpenAI-compatible endpoint), `hf:DIR` / `DIR` (a local
  VLM; a text-only LM cannot see the image and is refused). Or a ready `Judge` (e.g. HFJudge(model=...)).
- Position swap (`swap=True`): every pair is asked in both orders; a verdict counts only when both orders
  agree, otherwise the pair is undecided (`inconsistent`, reported: that IS position bias).
- Verdicts go through the judge's cache (halbench/judge_cache.py: the SQLite cache halbench's judges
  share; key = judge id + prompt + image content), so a rerun asks nothing twice. Failed or unparseable
  replies are never a verdict (and never cached).
- k > 2 samples: every pair is compared (k(k-1)/2, times 2 with the swap) and the response with the most
  wins is chosen, the one with the fewest rejected (Copeland; (R): the paper's k is not stated).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from halbench.errors import HalbenchError

TEMPLATE = (
    "You are given an image, a question about it, and two responses. Decide which response is better. "
    "The better response contains less hallucination (nothing that is not in the image) and more helpful "
    "information; it is concise and does not describe details that are not clearly visible.\n\n"
    "Question: {prompt}\n\nResponse 1: {response_1}\n\nResponse 2: {response_2}\n\n"
    "Start your answer with \"Response 1\" or \"Response 2\" (the better one), then explain why."
)

_LEAD = re.compile(r"^\W*(?:the\s+better\s+(?:response|one)\s+is\s*:?\s*)?response\s*([12])\b"
                   r"(?!\W*(?:or|and|vs\.?|versus)\W+response)", re.IGNORECASE)
_BETTER = re.compile(r"response\s*([12])\s+is\s+(?:the\s+)?better|better\s+(?:response|one)\s+is\s*:?\s*"
                     r"\W*response\s*([12])", re.IGNORECASE)


def parse_choice(text: str) -> tuple[int | None, str | None]:
    """1 or 2 from an annotator reply: "Response N is better" / "the better response is Response N", else a
    leading "Response N", else the only response number mentioned; otherwise an error."""
    m = _BETTER.search(text)  # an explicit "Response N is better" wins over a leading mention
    if m:
        return int(m.group(1) or m.group(2)), None
    m = _LEAD.search(text.strip())
    if m:
        return int(m.group(1)), None
    named = set(re.findall(r"response\s*([12])\b", text, re.IGNORECASE))
    if len(named) == 1:
        return int(named.pop()), None
    return None, "no 'Response 1' / 'Response 2' verdict in the annotator reply"


@dataclass
class AnnotatorStats:
    comparisons: int = 0  # pairs asked (each in one or two orders)
    decided: int = 0
    inconsistent: int = 0  # the two orders disagreed (position bias)
    failed: int = 0  # a call failed or could not be parsed
    first_position: int = 0  # verdicts for whichever response was shown first
    verdicts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        return {"annotator/comparisons": float(self.comparisons), "annotator/decided": float(self.decided),
                "annotator/inconsistent": float(self.inconsistent), "annotator/failed": float(self.failed),
                "annotator/first_position_rate": self.first_position / self.verdicts if self.verdicts else None}


class PairwiseAnnotator:
    """`PairwiseAnnotator("openai:MODEL@URL")`, `("hf:DIR")`, or `(judge=<Judge>)`."""

    name = "annotator"

    def __init__(self, spec: str | None = None, *, judge: Any = None, template: str = TEMPLATE,
                 swap: bool = True, cache: str | None = "on", **judge_kw: Any):
        if judge is None:
            if not spec:
                raise HalbenchError("the annotator needs a model: annotator:openai:MODEL@URL or annotator:hf:DIR")
            from halbench.judges import _cache, make_judge

            judge = make_judge(spec, image=True, cache=_cache(cache), **judge_kw)
        for key in ("{prompt}", "{response_1}", "{response_2}"):
            if key not in template:
                raise HalbenchError(f"annotator template lacks the {key} field")
        self.judge, self.template, self.swap = judge, template, swap
        self.stats = AnnotatorStats()

    def _request(self, row: Any, first: str, second: str) -> Any:
        from halbench.judges import JUDGE_GENERATION, JudgeRequest

        image = row.image if isinstance(row.image, str) else None
        return JudgeRequest(id=f"annot-{row.id}", generation=JUDGE_GENERATION, image=image,
                            prompt=self.template.format(prompt=row.prompt, response_1=first, response_2=second))

    def compare(self, rows: Sequence[Any], a: Sequence[str], b: Sequence[str]) -> list[int | None]:
        """Per pair: +1 when a is better, -1 when b is, None when undecided (failed, or the orders disagree)."""
        reqs = [self._request(r, x, y) for r, x, y in zip(rows, a, b)]
        if self.swap:
            reqs += [self._request(r, y, x) for r, x, y in zip(rows, a, b)]
        verdicts = self.judge.judge(reqs, parse_choice)
        n = len(rows)
        out: list[int | None] = []
        for i in range(n):
            self.stats.comparisons += 1
            ab = verdicts[i]
            ba = verdicts[n + i] if self.swap else None
            if not ab.ok or (ba is not None and not ba.ok):
                self.stats.failed += 1
                out.append(None)
                continue
            first = [ab.value] + ([ba.value] if ba is not None else [])
            self.stats.first_position += sum(v == 1 for v in first)
            self.stats.verdicts += len(first)
            a_wins = ab.value == 1
            if ba is not None and (ba.value == 2) != a_wins:
                self.stats.inconsistent += 1
                out.append(None)
                continue
            self.stats.decided += 1
            out.append(1 if a_wins else -1)
        return out

    def pick(self, rows: Sequence[Any], samples: Sequence[Sequence[str | None]]) -> list[tuple[int, int] | None]:
        """(chosen index, rejected index) per row from pairwise verdicts over its valid samples, or None."""
        jobs = []  # (row index, i, j)
        for r, ss in enumerate(samples):
            valid = [i for i, s in enumerate(ss) if s is not None]
            jobs += [(r, i, j) for i, j in itertools.combinations(valid, 2) if ss[i] != ss[j]]
        res = self.compare([rows[r] for r, _, _ in jobs], [samples[r][i] for r, i, _ in jobs],
                           [samples[r][j] for r, _, j in jobs]) if jobs else []
        wins: list[dict[int, int]] = [{} for _ in samples]
        decided: list[bool] = [False] * len(samples)
        for (r, i, j), v in zip(jobs, res):
            wins[r].setdefault(i, 0)
            wins[r].setdefault(j, 0)
            if v is not None:
                wins[r][i if v > 0 else j] += 1
                decided[r] = True
        out: list[tuple[int, int] | None] = []
        for w, ok in zip(wins, decided):
            if not ok:
                out.append(None)
                continue
            best = max(w, key=lambda k: (w[k], -k))
            worst = min(w, key=lambda k: (w[k], k))
            out.append(None if w[best] == w[worst] else (best, worst))
        return out
