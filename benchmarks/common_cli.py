"""Machine facts, the flags every benchmark takes, the SUMMARY line + JSON figures, child processes."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


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
