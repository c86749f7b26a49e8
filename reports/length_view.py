"""Length comparisons (length_control.py) as report tables, one plain sentence, and comparison.json data.

The sentence answers the reader's question in the words of issue 15: "CHAIRi fell 6.7 points; a length-matched
base falls 6.2: most of the gain is shorter captions". It is built from the objects control (base captions
cut to the trained caption's object count), because CHAIRi and recall count objects, not words.
"""

from __future__ import annotations

from typing import Any

from halbench.reports.length_control import FIGURES, LENGTH_KEYS, LengthComparison
from halbench.reports.model import Table
from halbench.reports.stats import PairedResult

_RATES = {key for key, _, _, rate in FIGURES if rate}
_LABELS = {key: label for key, label, _, _ in FIGURES}
CONTROL_KEYS = ("chair_i", "chair_s", "recall", "words", "objects")


def _scale(key: str) -> float:
    return 100.0 if key in _RATES else 1.0


def _num(key: str, v: float | None) -> str:
    return "—" if v is None or v != v else f"{v * _scale(key):.2f}"


def _delta(key: str, r: PairedResult | None) -> str:
    if r is None or r.delta != r.delta:
        return "—"
    s = _scale(key)
    ci = f" [{r.ci.lo * s:+.2f}, {r.ci.hi * s:+.2f}]" if r.ci else ""
    return f"{r.delta * s:+.2f}{ci}"


def _p(r: PairedResult | None, n_boot: int) -> str:
    if r is None or r.p is None:
        return "—"
    return f"<{1 / n_boot:.3g}" if r.p <= 1 / n_boot else f"{r.p:.3f}"


def length_table(c: LengthComparison, n_boot: int) -> Table:
    d = c.deltas["run-base"]
    rows = [[_LABELS[k], _num(k, c.values["base"][k]), _num(k, c.values["run"][k]), _delta(k, d.get(k)),
             _p(d.get(k), n_boot)] for k in ("chair_i", "recall") + LENGTH_KEYS]
    return Table(f"Length and coverage: {c.run} vs {c.base} ({c.n_pairs} paired captions)",
                 ["figure", c.base, c.run, "Δ [95% CI]", "p (paired bootstrap)"], rows,
                 "Rates ×100. Words are the CHAIR pipeline's words (n_words). A lower CHAIR with fewer objects named "
                 "may only mean shorter captions: see the length-matched control.")


def control_table(c: LengthComparison, n_boot: int) -> Table:
    names = [ctl.name for ctl in c.controls]
    header = ["figure", c.base] + [f"base cut to {n}" for n in names] + [c.run] + \
             [f"{c.run} − cut to {n} [95% CI]" for n in names]
    rows = []
    for k in CONTROL_KEYS:
        row = [_LABELS[k], _num(k, c.values["base"][k])] + [_num(k, c.values[n][k]) for n in names]
        row += [_num(k, c.values["run"][k])] + [_delta(k, c.deltas[f"run-{n}"].get(k)) for n in names]
        rows.append(row)
    cut = "; ".join(f"{ctl.name}: {ctl.description}, {ctl.n_cut} of {c.n_pairs} cut" for ctl in c.controls)
    return Table(f"Length-matched control: {c.run} vs its base cut to the same length", header, rows,
                 f"Re-scored with {c.pipeline} against each record's ground truth. {cut}. A difference whose CI "
                 "excludes 0 is what the trained model does beyond saying less.")


def summary_sentence(c: LengthComparison) -> str:
    """One sentence: how CHAIRi moved, how the length-matched base moves, and what that means."""
    run = c.deltas["run-base"].get("chair_i")
    head = f"{c.task}, {c.run}: "
    if run is None or run.delta != run.delta:
        return head + "CHAIRi is undefined (no object mentions)."
    d = run.delta * 100
    moved = f"CHAIRi {'fell' if d < 0 else 'rose'} {abs(d):.1f} points" if round(d, 1) else "CHAIRi did not move"
    if not c.controls:
        return head + moved + "; no length-matched control (see the notes)."
    ctl = c.deltas["objects-base"].get("chair_i")
    beyond = c.deltas["run-objects"].get("chair_i")
    cd = ctl.delta * 100 if ctl is not None and ctl.delta == ctl.delta else float("nan")
    text = head + f"{moved}; a length-matched base (same objects per caption) {_verb(cd)}"
    if d >= 0 or cd != cd:
        return text + "."
    significant = beyond is not None and beyond.ci is not None and (beyond.ci.hi < 0 or beyond.ci.lo > 0)
    gap = _delta("chair_i", beyond)
    mostly_length = cd <= 0 and cd / d >= 0.5
    if significant and beyond.delta < 0:
        tail = ("most of the gain is shorter captions, but the trained model also names better objects"
                if mostly_length else "most of the gain is not length: the trained model names better objects")
        tail += f" ({gap} points against the length-matched base)"
    elif significant:
        tail = ("all of the gain is shorter captions: at the same object count the base hallucinates less "
                f"(trained − length-matched: {gap})")
    elif mostly_length:
        tail = f"most of the gain is shorter captions (trained − length-matched: {gap}, CI includes 0)"
    else:
        tail = f"length explains part of the gain; the rest is not significant (trained − length-matched: {gap})"
    return f"{text}: {tail}."


def _verb(cd: float) -> str:
    if cd != cd:
        return "is undefined"
    if round(cd, 1) == 0:
        return "does not move"
    return f"{'falls' if cd < 0 else 'rises'} {abs(cd):.1f}"


def _result(r: PairedResult | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"delta": r.delta, "ci": [r.ci.lo, r.ci.hi] if r.ci else None, "p": r.p, "n": r.n, "test": r.test}


def comparison_json(c: LengthComparison) -> dict[str, Any]:
    """Raw numbers (rates in [0, 1], not ×100) for comparison.json."""
    return {"task": c.task, "base": c.base, "run": c.run, "n_pairs": c.n_pairs, "pipeline": c.pipeline,
            "values": c.values, "deltas": {name: {k: _result(r) for k, r in d.items()} for name, d in c.deltas.items()},
            "controls": [{"name": ctl.name, "description": ctl.description, "n_cut": ctl.n_cut,
                          "n_mismatched": ctl.mismatched} for ctl in c.controls],
            "summary": summary_sentence(c), "notes": c.notes}
