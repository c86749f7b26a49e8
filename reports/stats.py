"""Uncertainty for report numbers: bootstrap CIs, paired bootstrap, exact McNemar.

Every statistic the report recomputes is a ratio of sums over samples (accuracy = sum(correct)/n, CHAIR_i =
sum(hallucinated mentions)/sum(mentions), ...). So one bootstrap draw is one vector of per-column sums, and
every metric of a task is evaluated on the same draws (common random numbers: the CIs of accuracy and F1
come from the same resamples, and paired comparisons resample the same sample ids in both runs).

- Percentile bootstrap, B draws (default 1000), fixed seed: the report is deterministic.
- Paired bootstrap (Koehn 2004, "Statistical significance tests for machine translation evaluation"):
  resample paired sample ids, compute metric(other) - metric(base) on each draw; the 95% CI of the delta and
  a two-sided p = 2 * min(P(delta* <= 0), P(delta* >= 0)), floored at 1/B when no draw crosses 0.
- McNemar's exact test (McNemar 1947; exact binomial form as in statsmodels `mcnemar(exact=True)`): on the
  discordant pairs b (base right, other wrong) and c (base wrong, other right), p = min(1, 2 * P(X <= min(b, c)))
  with X ~ Binomial(b + c, 1/2). Checked against scipy.stats.binomtest in tests/test_reports.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

Columns = Mapping[str, np.ndarray]
StatFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]

DEFAULT_BOOT = 1000
#: how many resample-count cells to materialise at once (memory bound: 8 bytes each)
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float


@dataclass(frozen=True)
class PairedResult:
    delta: float
    ci: Interval | None
    p: float | None
    n: int
    test: str  # "paired bootstrap" | "unpaired bootstrap" | "McNemar exact"


def _matrix(cols: Columns) -> tuple[list[str], np.ndarray]:
    names = list(cols)
    if not names:
        return names, np.zeros((0, 0))
    return names, np.column_stack([np.asarray(cols[k], dtype=float) for k in names])


def _resample_counts(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """(m, n) matrix: how often each of n samples was drawn in each of m bootstrap resamples."""
    idx = rng.integers(0, n, size=(m, n))
    idx += (np.arange(m) * n)[:, None]  # one bincount for all m rows
    return np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)  # int counts: matmul casts, faster


def bootstrap_sums(cols: Columns, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> dict[str, np.ndarray]:
    """Column sums over `n_boot` resamples of the rows: {column: array of shape (n_boot,)}."""
    names, x = _matrix(cols)
    n = x.shape[0]
    out = np.zeros((n_boot, len(names)))
    if n == 0:
        return {k: out[:, j] for j, k in enumerate(names)}
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        out[start:start + m] = _resample_counts(rng, n, m) @ x
    return {k: out[:, j] for j, k in enumerate(names)}


def full_sums(cols: Columns) -> dict[str, np.ndarray]:
    """The sums over all rows, shaped (1,) so a StatFn sees the same shapes as for bootstrap draws."""
    return {k: np.asarray([np.sum(np.asarray(v, dtype=float))]) for k, v in cols.items()}


def evaluate(fn: StatFn, sums: Mapping[str, np.ndarray]) -> np.ndarray:
    """fn on sums with division warnings silenced (0/0 -> nan, dropped by the percentile step)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(fn(sums), dtype=float)


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> Interval | None:
    finite = draws[np.isfinite(draws)]
    if finite.size < max(10, draws.size // 2):  # mostly undefined draws: no honest interval
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(lo), float(hi))


def bootstrap_ci(cols: Columns, fn: StatFn, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> Interval | None:
    return percentile_ci(evaluate(fn, bootstrap_sums(cols, n_boot, seed)))


def bootstrap_p(deltas: np.ndarray) -> float | None:
    """Two-sided bootstrap p for H0: delta = 0, floored at 1/B."""
    d = deltas[np.isfinite(deltas)]
    if d.size == 0:
        return None
    p = 2 * min(np.mean(d <= 0), np.mean(d >= 0))
    return float(min(1.0, max(p, 1 / d.size)))


def paired_deltas(base: Columns, other: Columns, fns: Mapping[str, StatFn], n_boot: int = DEFAULT_BOOT,
                  seed: int = 0) -> dict[str, PairedResult]:
    """Paired bootstrap: rows of `base` and `other` are the same sample ids, in the same order."""
    joint = {f"a\0{k}": v for k, v in base.items()} | {f"b\0{k}": v for k, v in other.items()}
    sums = bootstrap_sums(joint, n_boot, seed)
    full = full_sums(joint)
    n = len(next(iter(base.values()))) if base else 0
    return {name: _delta_result(fn, sums, full, n, "paired bootstrap") for name, fn in fns.items()}


def unpaired_deltas(base: Columns, other: Columns, fns: Mapping[str, StatFn], n_boot: int = DEFAULT_BOOT,
                    seed: int = 0) -> dict[str, PairedResult]:
    """Independent resamples of each run, for runs whose samples do not pair up by id."""
    sa, sb = bootstrap_sums(base, n_boot, seed), bootstrap_sums(other, n_boot, seed + 1)
    sums = {f"a\0{k}": v for k, v in sa.items()} | {f"b\0{k}": v for k, v in sb.items()}
    full = {f"a\0{k}": v for k, v in full_sums(base).items()} | {f"b\0{k}": v for k, v in full_sums(other).items()}
    return {name: _delta_result(fn, sums, full, 0, "unpaired bootstrap") for name, fn in fns.items()}


def _split(sums: Mapping[str, np.ndarray], side: str) -> dict[str, np.ndarray]:
    prefix = side + "\0"
    return {k[len(prefix):]: v for k, v in sums.items() if k.startswith(prefix)}


def _delta_result(fn: StatFn, sums, full, n: int, test: str) -> PairedResult:
    d_boot = evaluate(fn, _split(sums, "b")) - evaluate(fn, _split(sums, "a"))
    delta = float((evaluate(fn, _split(full, "b")) - evaluate(fn, _split(full, "a")))[0])
    return PairedResult(delta, percentile_ci(d_boot), bootstrap_p(d_boot), n, test)


def binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n trials with p=1/2 (symmetric: 2 * lower tail, capped at 1)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    log_half_n = n * math.log(2.0)
    lg_n = math.lgamma(n + 1)
    tail = sum(math.exp(lg_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) - log_half_n) for i in range(k + 1))
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class McNemar:
    b: int  # base right, other wrong
    c: int  # base wrong, other right
    p: float


def mcnemar(base_correct: np.ndarray, other_correct: np.ndarray) -> McNemar:
    a = np.asarray(base_correct, dtype=bool)
    o = np.asarray(other_correct, dtype=bool)
    b, c = int(np.sum(a & ~o)), int(np.sum(~a & o))
    return McNemar(b, c, binom_two_sided_half(min(b, c), b + c))
