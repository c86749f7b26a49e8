"""Shared helpers for the benchmark scripts, re-exported from their modules so scripts can `import common`:

  common_timing   Timing (wall + process-CPU per repeat), measure, interleaved (round-robin), CudaTimer,
                  Stopwatch, Profiler
  common_memory   PeakRSS (sampled RSS, tracemalloc, CUDA peak), current_rss_bytes, lifetime_peak_rss_mb
  common_cli      machine_info, device_and_dtype, parser (the flags every script takes), setup, ratio,
                  summary (SUMMARY line + JSON), run_child (a contender in its own process)
  common_models   embedded_vlm, world_shaped_vlm, make_random_llava, count_params
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common_cli import (BENCH_DIR, REPO, device_and_dtype, machine_info, parser, ratio,  # noqa: E402,F401
                        run_child, setup, summary)
from common_memory import MB, PeakRSS, current_rss_bytes, lifetime_peak_rss_mb  # noqa: E402,F401
from common_models import (WORLD_SHAPED_LABEL, count_params, embedded_vlm, make_random_llava,  # noqa: E402,F401
                           world_shaped_vlm)
from common_timing import CudaTimer, Profiler, Stopwatch, Timing, interleaved, measure  # noqa: E402,F401
