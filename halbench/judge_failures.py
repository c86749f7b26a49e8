"""The judge-failure gate: a run whose judge failed too often exits non-zero, after writing everything.

A judged benchmark (MMHal-Bench, Object HalBench with an LLM judge) excludes each failed verdict from its
metrics and counts it in `n_judge_failures`. A few failures leave the numbers meaningful; many make them
describe a different subset of the benchmark. `check(results, max_rate)` compares, per task, the share of
answered samples whose verdict failed with `max_rate` (`--max-judge-failure-rate`, default 0.05) and raises
JudgeFailures with one summary line when any task is over. The run directory and report are complete by
then, and a re-run of the same command re-asks only the failed verdicts.
"""

from __future__ import annotations

from typing import Any

from halbench.errors import HalbenchError

DEFAULT_MAX_RATE = 0.05


class JudgeFailures(HalbenchError):
    """More judge failures than allowed: exit code 3 (bad input is 2), so scripts can tell them apart."""

    exit_code = 3


def failure_rates(results: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """{task: (n_judge_failures, n_answered)} for every task that reports judge failures."""
    out = {}
    for name, res in (results.get("tasks") or {}).items():
        m = res.get("metrics") or {}
        if m.get("n_judge_failures") is None:
            continue
        answered = int(m.get("n_samples", res.get("n_samples", 0)) or 0) - int(m.get("n_errors") or 0)
        out[name] = (int(m["n_judge_failures"]), max(0, answered))
    return out


def check(results: dict[str, Any], max_rate: float | None, where: str = "") -> None:
    """Raise JudgeFailures when some task's failure share exceeds max_rate (None: no gate)."""
    if max_rate is None:
        return
    over = [(t, f, n) for t, (f, n) in failure_rates(results).items() if n and f / n > max_rate]
    if over:
        parts = ", ".join(f"{t} {f}/{n} ({f / n:.1%})" for t, f, n in over)
        raise JudgeFailures(f"judge failures over --max-judge-failure-rate {max_rate:g}{where}: {parts}; results "
                            "and report are written; re-run the same command to re-ask only the failed verdicts")
