"""Shared helpers for the benchmark scripts: timing, memory, machine facts, CLI flags, the summary line.

Timing: `measure(fn, warmup, repeats)` runs `fn` warmup + repeats times and keeps the per-repeat wall times;
the figure we report is the median (robust to the noisy, shared 2-core CPUs these run on in CI). On CUDA,
`measure(..., cuda=True)` synchronises the device around each repeat, and `CudaTimer` times a region with CUDA
events (device time, no host-side launch overhead hidden in it).

Memory: torch's CPU tensors are allocated by c10's allocator, not Python's, so `tracemalloc` does not see them;
`PeakRSS` therefore samples the process's resident set (/proc/self/statm, every 2 ms) in a thread and reports
the peak above the level when the block began, and also records the Python-heap peak from tracemalloc when
asked (`python_heap=True`). `resource.getrusage(...).ru_maxrss` gives the process-lifetime peak, which is the
right figure only when each contender runs in its own process: `run_child` does that. On CUDA, `PeakRSS` also
reports `torch.cuda.max_memory_allocated` over the block.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall times (seconds) of the timed repeats of one contender."""

    name: str
    times: list[float] = field(default_factory=list)

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
        return {"name": self.name, "median_s": self.median, "best_s": self.best, "times_s": self.times}


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
        t0 = time.perf_counter()
        result = fn()
        _sync(cuda)
        timing.times.append(time.perf_counter() - t0)
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
            t0 = time.perf_counter()
            results[name] = fn()
            _sync(cuda)
            timings[name].times.append(time.perf_counter() - t0)
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


# ---------------------------------------------------------------------------------------------- memory
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


# ---------------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The facts a reader needs to compare figures between machines."""
    import torch
    import transformers

    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "load_avg_1m": round(os.getloadavg()[0], 2)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def device_and_dtype(requested: str | None = None):
    """("cuda", bf16) when a GPU is present (or asked for), else ("cpu", fp32)."""
    import torch

    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, (torch.bfloat16 if device.startswith("cuda") else torch.float32)


# ---------------------------------------------------------------------------------------------- CLI / output
def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true",
                   help="Tiny sizes, 1 repeat: checks the script runs (CI), the figures mean nothing.")
    p.add_argument("--repeats", type=int, default=3, help="Timed repeats per contender (median reported).")
    p.add_argument("--warmup", type=int, default=1, help="Untimed warm-up runs per contender.")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads for every contender (default 1: on a shared, oversubscribed CPU, "
                        "2 OpenMP threads per process stall at barriers and make timings 10-25x noisier; "
                        "0 = torch's default).")
    p.add_argument("--json", type=Path, default=None, help="Also write every figure to this JSON file.")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available).")
    return p


def setup(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by child processes
    if args.smoke:
        args.repeats, args.warmup = 1, 0
    torch.manual_seed(0)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summary(name: str, text: str, figures: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """Print the one-line summary every benchmark ends with; also write the JSON file when asked."""
    figures = {**figures, "machine": machine_info(), "benchmark": name}
    if args is not None and getattr(args, "smoke", False):
        figures["smoke"] = True
        text += "  [smoke run: sizes too small for the figures to mean anything]"
    if args is not None and getattr(args, "json", None):
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2, default=_jsonable) + "\n")
    print(f"SUMMARY {name}: {text}", flush=True)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def run_child(script: Path, argv: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Run `script argv --json TMP` in a fresh Python process and return its JSON (memory isolation: each
    contender's ru_maxrss then belongs to it alone)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, str(script), *argv, "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"child {' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------- models
def embedded_vlm(tmp_dir: Path, smoke: bool = False) -> tuple[Path, str]:
    """The embedded world's VLM directory and a label saying which model it is.

    With --smoke a random-weight tiny LLaVA from halbench.testing.tiny is built in `tmp_dir`; when the world
    is not built/installed, a random model of the embedded VLM's architecture (`world_shaped_vlm`). The
    label says which.
    """
    if smoke:
        from halbench.testing.tiny import make_tiny_llava

        path = make_tiny_llava(Path(tmp_dir) / "tiny_llava", seed=0)
        return path, "random tiny LLaVA from halbench.testing.tiny (--smoke)"
    try:
        from halbench.world import default_world

        world = default_world()
        return Path(world.vlm_dir), f"embedded world VLM ({world.vlm_dir})"
    except Exception as exc:  # noqa: BLE001 - any failure means "not available": fall back, say why
        reason = f"{type(exc).__name__}: {exc}"
    print(f"embedded world VLM not available ({reason[:160]}); using a random model of its architecture")
    return world_shaped_vlm(Path(tmp_dir)), WORLD_SHAPED_LABEL


WORLD_SHAPED_LABEL = "world-shaped random LLaVA (embedded VLM's architecture, random weights)"


def world_shaped_vlm(tmp_dir: Path) -> Path:
    """A random-weight LLaVA with the embedded world VLM's architecture (halbench/world/build.py defaults:
    CLIP 48px/8 -> 36 image tokens, vision width 128 x 3 layers; Llama width 128 x 4 layers, MLP 384, vocab 640,
    tied embeddings). Its speed is the embedded VLM's; its answers are not (random weights never say eos, so
    every answer runs to max_new_tokens)."""
    return make_random_llava(Path(tmp_dir) / "world_shaped", image_size=48, patch_size=8, vision_hidden=128,
                             vision_layers=3, text_hidden=128, text_layers=4, mlp_ratio=3, vocab_size=640,
                             tie_word_embeddings=True)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_random_llava(out_dir: Path, *, image_size: int = 336, patch_size: int = 14, vision_hidden: int = 64,
                      vision_layers: int = 2, text_hidden: int = 128, text_layers: int = 2, mlp_ratio: int = 2,
                      vocab_size: int = 512, tie_word_embeddings: bool = False, seed: int = 0) -> Path:
    """A random-weight LLaVA-1.5-*shaped* checkpoint (CLIP tower at `image_size`/`patch_size`, so 576 image
    tokens at 336/14 as in LLaVA-1.5-336) with small widths, saved like halbench.testing.tiny's models.

    The real tokenizer/processor classes are used (tokenizer from halbench.testing.tiny.build_tokenizer), so
    HFModel loads it offline like any checkpoint. Widths are small so it runs on a 2-core CPU; the point is
    the prompt shape (image tokens >> text tokens), which decides what prefix reuse saves.
    """
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from halbench.testing.tiny import IMAGE_TOKEN, LLAVA_CHAT_TEMPLATE, build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(vocab_size=vocab_size)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=text_hidden, intermediate_size=mlp_ratio * text_hidden,
                       num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=tie_word_embeddings)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=mlp_ratio * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=4, image_size=image_size,
                              patch_size=patch_size, projection_dim=vision_hidden)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=tie_word_embeddings)
    model = LlavaForConditionalGeneration(config).eval()
    clip_norm = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": image_size}, do_center_crop=True,
                                              crop_size={"height": image_size, "width": image_size}, **clip_norm),
        tokenizer=tok, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, k, getattr(tok, k))
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
