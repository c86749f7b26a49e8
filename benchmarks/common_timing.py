"""Timing for the benchmark scripts: per-repeat wall AND process-CPU times, warm-up, round-robin contenders,
CUDA events, per-label exclusive-time profiler.

`measure(fn, warmup, repeats)` runs `fn` warmup + repeats times and keeps, per timed repeat, the wall time
(perf_counter) and this process's CPU time (time.process_time: user + sys of every thread). With one torch
thread (the scripts' default) CPU time is the work done, and unlike wall time it does not grow when the other
users of a shared machine take the cores; `Timing.cpu_median` is what the headline ratios use. On CUDA,
`measure(..., cuda=True)` synchronises around each repeat (then wall time is the figure: the work is on the
device), and `CudaTimer` times a region with CUDA events.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Timing:
    """Wall times and process-CPU times (seconds) of the timed repeats of one contender."""

    name: str
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)

    def cpu_rate(self, n_items: float) -> float:
        """Items per CPU-second at the median CPU time (the figure the ratios use)."""
        return n_items / self.cpu_median

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def rate(self, n_items: float) -> float:
        """Items per second at the median time."""
        return n_items / self.median

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median_s": self.median, "best_s": self.best, "times_s": self.times,
                "cpu_median_s": self.cpu_median if self.cpu_times else None, "cpu_times_s": self.cpu_times}


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], name: str = "", *, warmup: int = 1, repeats: int = 3,
            cuda: bool = False) -> tuple[Timing, Any]:
    """Run `fn` `warmup` times untimed, then `repeats` times timed; returns (Timing, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    timing = Timing(name)
    for _ in range(repeats):
        gc.collect()
        _sync(cuda)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        _sync(cuda)
        timing.times.append(time.perf_counter() - t0)
        timing.cpu_times.append(time.process_time() - c0)
    return timing, result


def interleaved(contenders: dict[str, Callable[[], Any]], *, warmup: int = 1, repeats: int = 3,
                cuda: bool = False) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Time several contenders round-robin (A B A B ...), so a burst of load from the other users of a shared
    machine hits all of them rather than one; returns ({name: Timing}, {name: last result})."""
    results: dict[str, Any] = {}
    for name, fn in contenders.items():
        for _ in range(warmup):
            results[name] = fn()
    timings = {name: Timing(name) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            gc.collect()
            _sync(cuda)
            t0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn()
            _sync(cuda)
            timings[name].times.append(time.perf_counter() - t0)
            timings[name].cpu_times.append(time.process_time() - c0)
    return timings, results


class CudaTimer:
    """Device time of a region, from CUDA events: `with CudaTimer() as t: ...; t.seconds`."""

    def __enter__(self) -> "CudaTimer":
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._start.record()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self._end.record()
        torch.cuda.synchronize()
        self.seconds = self._start.elapsed_time(self._end) / 1000.0


class Stopwatch:
    """Accumulates time spent inside wrapped callables (used to split a training step into its parts)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - t0
                self.calls[label] = self.calls.get(label, 0) + 1

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


class Profiler:
    """Exclusive time per label inside instrumented callables, counted only while `active`.

    `patch(owner, "name", label)` replaces owner.name (a class or module attribute) with a timed wrapper;
    nested instrumented calls are charged to the innermost label (a stack), so labels add up to at most the
    enclosing wall time. `label` may be a callable(stack) -> str to pick the label from the callers (e.g. a
    forward inside the reference computation is charged to "reference_forward"). `restore()` undoes patches.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.active = False
        self._stack: list[list] = []  # [label, start, child_time]
        self._patches: list[tuple[Any, str, Any]] = []

    def wrap(self, label, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            name = label([f[0] for f in self._stack]) if callable(label) else label
            frame = [name, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                inclusive = time.perf_counter() - frame[1]
                self.totals[name] = self.totals.get(name, 0.0) + inclusive - frame[2]
                self.calls[name] = self.calls.get(name, 0) + 1
                if self._stack:
                    self._stack[-1][2] += inclusive

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def patch(self, owner: Any, attr: str, label) -> None:
        original = getattr(owner, attr)
        self._patches.append((owner, attr, original))
        setattr(owner, attr, self.wrap(label, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()
