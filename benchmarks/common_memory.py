"""Memory of a block for the benchmark scripts.

torch's CPU tensors are allocated by c10's allocator, not Python's, so `tracemalloc` does not see them;
`PeakRSS` therefore samples the process's resident set (/proc/self/statm, every 2 ms) in a thread and reports
the peak above the level when the block began, and also records the Python-heap peak from tracemalloc when
asked (`python_heap=True`). `resource.getrusage(...).ru_maxrss` gives the process-lifetime peak, which is the
right figure only when each contender runs in its own process (`common_cli.run_child`). On CUDA, `PeakRSS`
also reports `torch.cuda.max_memory_allocated` over the block.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import tracemalloc

MB = 1024 * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def lifetime_peak_rss_mb() -> float:
    """Peak resident set of this process since it started (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Peak memory of a block: RSS above the starting level (sampled), Python heap (tracemalloc), CUDA."""

    def __init__(self, interval_s: float = 0.002, python_heap: bool = False, cuda: bool = False) -> None:
        self.interval_s, self.python_heap, self.cuda = interval_s, python_heap, cuda
        self.peak_rss_delta_mb = self.python_heap_peak_mb = self.cuda_peak_mb = 0.0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, current_rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self._base = self._peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        if self.python_heap:
            tracemalloc.start()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, current_rss_bytes())
        self.peak_rss_delta_mb = (self._peak - self._base) / MB
        if self.python_heap:
            self.python_heap_peak_mb = tracemalloc.get_traced_memory()[1] / MB
            tracemalloc.stop()
        if self.cuda:
            import torch

            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / MB

    def as_dict(self) -> dict[str, float]:
        d = {"peak_rss_delta_mb": round(self.peak_rss_delta_mb, 1)}
        if self.python_heap:
            d["python_heap_peak_mb"] = round(self.python_heap_peak_mb, 2)
        if self.cuda:
            d["cuda_peak_mb"] = round(self.cuda_peak_mb, 1)
        return d
