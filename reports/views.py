"""Per-sample views: the rows a reader pages through (POPE flips, CHAIR captions, MMHal ratings).

A view is JSON drawn by static/report.js with DOM text nodes only (never innerHTML), so model output stays
text. Cells are self-describing values: a string is text; a list stacks cells; {"b": text, "c": tone} is a
badge (tone from a fixed list); {"t": caption, "m": [[start, end, "h"|"c", class], ...]} is a caption with
hallucinated ("h") / correct ("c") object mentions marked; {"th": thumb key, "alt": file name} is a thumbnail;
{"d": text, "s": summary} is collapsible long text. Rows carry filter values in "f".
Samples pair across runs by the record `id` the evaluator writes. A run is passed as (label, run dir, successful
records, pairs with the base run); the pairs are computed once per task (metrics.RunTask.pairs).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from halbench.reports.kinds import is_ok
from halbench.reports.model import View
from halbench.reports.thumbs import Thumbnailer

Rec = dict[str, Any]
RunRows = tuple[str, Path, list[Rec], list[tuple[Rec, Rec]]]  # label, run dir, ok records, pairs with base
PAGE = 25
#: fixed column widths (px); the other columns share the rest equally, so paired runs sit side by side
WIDTHS = {"Sample": 128, "Truth": 64, "Ground-truth objects": 150}


class ViewContext:
    """Numbers the views and hands out thumbnails once every view is built (`finish`)."""

    def __init__(self, thumbs: Thumbnailer):
        self.thumbs = thumbs
        self._n = 0
        self._pending: dict[int, tuple[str | None, Path]] = {}
        self._queues: list[list[tuple[dict, str | None, Path]]] = []

    def view(self, title: str, description: str, columns: list[str], filters: list[dict], rows: list[dict]) -> View:
        queue = []
        for row in rows:  # rows arrive in display order
            for cell in row["c"][0]:
                if isinstance(cell, dict) and id(cell) in self._pending:
                    queue.append((cell, *self._pending.pop(id(cell))))
        self._pending.clear()
        self._queues.append(queue)
        self._n += 1
        payload = {"columns": columns, "widths": [WIDTHS.get(c) for c in columns], "filters": filters, "rows": rows,
                   "page": PAGE}
        return View(f"view-{self._n}", title, description, len(rows), payload)

    def thumb(self, rec: Rec, run_dir: Path) -> dict:
        """A thumbnail cell (first column); its image is attached by finish()."""
        image = rec.get("image")
        alt = os.path.basename(image) if isinstance(image, str) and image else "no image"
        cell = {"th": None, "alt": alt}
        self._pending[id(cell)] = (image if isinstance(image, str) else None, run_dir)
        return cell

    def finish(self) -> None:
        """Thumbnails round-robin over the views, each in display order: when the cap is reached, every
        view's first pages still have images (rather than the first view taking them all)."""
        for i in range(max((len(q) for q in self._queues), default=0)):
            for queue in self._queues:
                if i < len(queue):
                    cell, image, run_dir = queue[i]
                    cell["th"] = self.thumbs.key(image, run_dir)
        self._queues.clear()


def pair_by_id(base: list[Rec], other: list[Rec]) -> list[tuple[Rec, Rec]]:
    """(base, other) for ids present and successful in both runs, in base order."""
    by_id = {str(r.get("id")): r for r in other if is_ok(r)}
    return [(a, by_id[str(a.get("id"))]) for a in base if is_ok(a) and str(a.get("id")) in by_id]


def _filter(key: str, label: str, names: dict[str, str], rows: list[dict]) -> dict:
    counts = {v: sum(1 for r in rows if r["f"].get(key) == v) for v in names}
    return {"k": key, "label": label, "options": [[v, f"{n} ({counts[v]})"] for v, n in names.items()]}


def _values_filter(key: str, label: str, rows: list[dict]) -> list[dict]:
    values = sorted({r["f"][key] for r in rows if r["f"].get(key)})
    return [_filter(key, label, {v: v for v in values}, rows)] if len(values) > 1 else []


def _ordered(rows: list[dict], order: list[str]) -> list[dict]:
    rank = {g: i for i, g in enumerate(order)}
    return sorted(rows, key=lambda r: rank.get(r["f"]["g"], len(rank)))  # stable: keeps id order inside


def _ids(rec: Rec) -> dict:
    return {"b": str(rec.get("id")), "c": "muted"}


# -- POPE -------------------------------------------------------------------------------------------------
def _cut_note(r: Rec) -> list:
    """A badge when the stored texts were cut at --max-stored-chars (halbench.stored_text), else nothing."""
    if not r.get("truncated"):
        return []
    lengths = ", ".join(f"{k} {v:,}" for k, v in (r.get("original_length") or {}).items())
    return [{"b": f"truncated when stored (original characters: {lengths})", "c": "warn"}]


def _pope_answer(r: Rec) -> list:
    return [{"b": str(r.get("pred")), "c": "good" if r.get("correct") else "bad"}, str(r.get("response") or ""),
            *_cut_note(r)]


def _pope_question(r: Rec) -> list:
    return [str(r.get("prompt") or ""), {"b": str(r.get("split", "")), "c": "muted"}]


POPE_GROUPS = {"rw": "right → wrong", "wr": "wrong → right"}
POPE_ERRORS = {"fp": "said yes, truth no", "fn": "said no, truth yes", "other": "unparsed answer"}


def pope_flips(ctx: ViewContext, base: RunRows, other: RunRows) -> View:
    rows = []
    for a, b in other[3]:
        if bool(a.get("correct")) == bool(b.get("correct")):
            continue
        rows.append({"f": {"g": "rw" if a.get("correct") else "wr", "s": str(a.get("split", ""))},
                     "c": [[ctx.thumb(a, base[1]), _ids(a)], _pope_question(a), {"b": str(a.get("label")), "c": "info"},
                           _pope_answer(a), _pope_answer(b)]})
    rows = _ordered(rows, list(POPE_GROUPS))
    filters = [_filter("g", "Change", POPE_GROUPS, rows)] + _values_filter("s", "Split", rows)
    return ctx.view(f"POPE answers that flipped: {base[0]} → {other[0]}",
                    "Questions answered correctly by one run and wrongly by the other, paired by sample id.",
                    ["Sample", "Question", "Truth", base[0], other[0]], filters, rows)


def pope_errors(ctx: ViewContext, run: RunRows) -> View:
    rows = []
    for r in run[2]:
        if not is_ok(r) or r.get("correct"):
            continue
        g = "other" if r.get("pred") not in ("yes", "no") else ("fp" if r.get("pred") == "yes" else "fn")
        rows.append({"f": {"g": g, "s": str(r.get("split", ""))},
                     "c": [[ctx.thumb(r, run[1]), _ids(r)], _pope_question(r), {"b": str(r.get("label")), "c": "info"},
                           _pope_answer(r)]})
    rows = _ordered(rows, list(POPE_ERRORS))
    filters = [_filter("g", "Error", POPE_ERRORS, rows)] + _values_filter("s", "Split", rows)
    return ctx.view(f"POPE wrong answers: {run[0]}", "Every question the model answered wrongly.",
                    ["Sample", "Question", "Truth", run[0]], filters, rows)


# -- CHAIR / Object HalBench ------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)", re.IGNORECASE)


def mark_caption(r: Rec) -> dict:
    """Caption with each mention's span: the record's `mention_spans` where they check out against the text
    (tasks/chair.py writes them), else found in order (`words` follow `mentioned`) on word boundaries.
    Offsets are UTF-16 code units, as JavaScript's String.slice counts them (an emoji is two)."""
    text = str(r.get("caption") or r.get("response") or "")
    hal = {str(h) for h in r.get("hallucinated") or []}
    spans = r.get("mention_spans") or []
    marks, pos = [], 0
    for i, (word, cls) in enumerate(zip(r.get("words") or [], r.get("mentioned") or [])):
        word, cls = str(word), str(cls)
        span = spans[i] if i < len(spans) else None
        if _valid_span(span, text, word):
            start, end = span
        else:
            m = _word_re(word).search(text, pos) or _word_re(word).search(text)
            if m is None:
                continue  # a lemmatised mention not in the text as written: still listed in the badges
            start, end = m.span()
        start = _widen(text, start, end, word, cls)
        if any(s < end and start < e for s, e, *_ in marks):
            continue
        marks.append([start, end, "h" if cls in hal or word in hal else "c", cls])
        pos = end
    marks.sort()
    if any(ord(ch) > 0xFFFF for ch in text):
        for mark in marks:
            mark[0], mark[1] = _utf16_len(text[:mark[0]]), _utf16_len(text[:mark[1]])
    return {"t": text, "m": marks}


def _widen(text: str, start: int, end: int, word: str, cls: str) -> int:
    """Start of the whole class name when the text spells it out before the matched word: CHAIR counts
    "table" for "dining table" (no such double word in the official list), the reader should see both words."""
    rest = cls[: len(cls) - len(word)] if cls.lower().endswith(word.lower()) and len(cls) > len(word) else ""
    if rest and rest.endswith(" ") and start >= len(rest) and text[start - len(rest):start].lower() == rest.lower():
        before = start - len(rest)
        if before == 0 or not text[before - 1].isalnum():
            return before
    return start


def _valid_span(span: Any, text: str, word: str) -> bool:
    return (isinstance(span, (list, tuple)) and len(span) == 2 and all(isinstance(x, int) for x in span)
            and 0 <= span[0] < span[1] <= len(text) and text[span[0]:span[1]].lower() == word.lower())


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _hal_badge(r: Rec) -> dict:
    if r.get("judge_error"):
        return {"b": f"judge failed, not scored: {r['judge_error']}", "c": "warn"}
    if r.get("skipped"):
        return {"b": f"not scored: {r['skipped']}", "c": "muted"}
    hal = sorted({str(h) for h in r.get("hallucinated") or []})
    return {"b": "hallucinated: " + ", ".join(hal), "c": "bad"} if hal else {"b": "no hallucination", "c": "good"}


def _gt(r: Rec) -> str:
    return ", ".join(sorted({str(g) for g in r.get("gt_objects") or []}))


CHAIR_GROUPS = {"appeared": "hallucination appeared", "disappeared": "hallucination disappeared",
                "changed": "hallucinated objects changed", "same": "no change"}


def _chair_group(a: Rec, b: Rec) -> str:
    ha, hb = set(a.get("hallucinated") or []), set(b.get("hallucinated") or [])
    if not ha and hb:
        return "appeared"
    if ha and not hb:
        return "disappeared"
    return "changed" if ha != hb else "same"


def chair_pairs(ctx: ViewContext, title: str, base, other) -> View:
    rows = [{"f": {"g": _chair_group(a, b)},
             "c": [[ctx.thumb(a, base[1]), _ids(a)], [mark_caption(a), _hal_badge(a), *_cut_note(a)],
                   [mark_caption(b), _hal_badge(b), *_cut_note(b)], _gt(a)]}
            for a, b in other[3]]
    rows = _ordered(rows, list(CHAIR_GROUPS))
    return ctx.view(f"{title} captions: {base[0]} → {other[0]}",
                    "Hallucinated objects are highlighted, correct objects underlined; paired by sample id.",
                    ["Sample", base[0], other[0], "Ground-truth objects"],
                    [_filter("g", "Show", CHAIR_GROUPS, rows)], rows)


def chair_single(ctx: ViewContext, title: str, run) -> View:
    rows = [{"f": {"g": "hal" if r.get("hallucinated") else "clean"},
             "c": [[ctx.thumb(r, run[1]), _ids(r)], [mark_caption(r), _hal_badge(r), *_cut_note(r)], _gt(r)]}
            for r in run[2] if is_ok(r)]
    rows = _ordered(rows, ["hal", "clean"])
    groups = {"hal": "with hallucination", "clean": "without hallucination"}
    return ctx.view(f"{title} captions: {run[0]}", "Hallucinated objects are highlighted, correct objects underlined.",
                    ["Sample", run[0], "Ground-truth objects"], [_filter("g", "Show", groups, rows)], rows)


# -- MMHal ------------------------------------------------------------------------------------------------
def _rating(r: Rec) -> list:
    rating = r.get("rating")
    if rating is None:
        badge = {"b": "judge failed: " + str(r.get("judge_error") or "no rating"), "c": "warn"}
    else:
        badge = {"b": f"rating {rating}", "c": "bad" if r.get("hallucination") else "good"}
    judge = {"d": str(r.get("judge_text") or ""), "s": f"judge reasoning ({r.get('judge_model') or 'unknown judge'})"}
    return [badge, str(r.get("response") or ""), judge, *_cut_note(r)]


def _mm_question(r: Rec) -> list:
    return [str(r.get("prompt") or ""), {"b": f"{r.get('question_type', '')} · {r.get('question_topic', '')}",
                                         "c": "muted"}]


MMHAL_GROUPS = {"worse": "rating fell", "better": "rating rose", "failed": "judge failed", "same": "unchanged"}


def _mm_group(a: Rec, b: Rec) -> str:
    ra, rb = a.get("rating"), b.get("rating")
    if ra is None or rb is None:
        return "failed"
    return "worse" if rb < ra else "better" if rb > ra else "same"


def mmhal_pairs(ctx: ViewContext, base, other) -> View:
    rows = [{"f": {"g": _mm_group(a, b), "s": str(a.get("question_type", ""))},
             "c": [[ctx.thumb(a, base[1]), _ids(a)], _mm_question(a), _rating(a), _rating(b)]}
            for a, b in other[3]]
    rows = _ordered(rows, list(MMHAL_GROUPS))
    filters = [_filter("g", "Change", MMHAL_GROUPS, rows)] + _values_filter("s", "Question type", rows)
    return ctx.view(f"MMHal ratings: {base[0]} → {other[0]}",
                    "Judge ratings (0-6; below 3 counts as hallucination) with the judge's reasoning.",
                    ["Sample", "Question", base[0], other[0]], filters, rows)


def mmhal_single(ctx: ViewContext, run) -> View:
    def group(r: Rec) -> str:
        return "failed" if r.get("rating") is None else "hal" if r.get("hallucination") else "ok"

    rows = [{"f": {"g": group(r), "s": str(r.get("question_type", ""))},
             "c": [[ctx.thumb(r, run[1]), _ids(r)], _mm_question(r), _rating(r)]} for r in run[2] if is_ok(r)]
    rows = _ordered(rows, ["hal", "failed", "ok"])
    groups = {"hal": "hallucination", "failed": "judge failed", "ok": "no hallucination"}
    filters = [_filter("g", "Show", groups, rows)] + _values_filter("s", "Question type", rows)
    return ctx.view(f"MMHal answers: {run[0]}", "Judge ratings (0-6; below 3 counts as hallucination).",
                    ["Sample", "Question", run[0]], filters, rows)


def views_for(kind: str, ctx: ViewContext, runs: list[RunRows]) -> list[View]:
    """The per-sample views of one task: paired against the base when there are several runs."""
    if not runs:
        return []
    title = {"chair": "CHAIR", "object_halbench": "Object HalBench"}.get(kind, kind)
    base, others = runs[0], runs[1:]
    if kind == "pope":
        return [pope_flips(ctx, base, o) for o in others] if others else [pope_errors(ctx, base)]
    if kind in ("chair", "object_halbench"):
        return [chair_pairs(ctx, title, base, o) for o in others] if others else [chair_single(ctx, title, base)]
    if kind == "mmhal":
        return [mmhal_pairs(ctx, base, o) for o in others] if others else [mmhal_single(ctx, base)]
    return []
