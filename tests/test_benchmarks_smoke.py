"""Every benchmark script runs in its reduced --smoke form (a smoke run: no timing is asserted), plus the
pieces of the benchmarks whose correctness the figures rest on (FLOP formula, GPU peak table, meta-device
materialisation, the step profiler).

The scripts run as subprocesses, exactly as a user runs them, and must end with their SUMMARY line and write
the JSON figures they promise. bench_dpo (3 training processes) and bench_online (needs the embedded world and
trains twice) take longer than 30 s and are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def run_smoke(script: str, tmp_path: Path, *extra: str, timeout: int = 300) -> dict:
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--json", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO), env=env)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert summary and summary[-1].startswith(f"SUMMARY {script[:-3]}:"), proc.stdout[-2000:]
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True and figures["benchmark"] == script[:-3]
    assert "cpu" in figures["machine"]
    return figures


def test_bench_generation_smoke(tmp_path):
    f = run_smoke("bench_generation.py", tmp_path)
    for wl in ("pope", "caption"):
        assert f[wl]["peer_1_at_a_time"]["samples_per_s"] > 0
        assert f[wl]["halbench_bs2"]["ratio_vs_peer"] > 0


def test_bench_prefix_reuse_smoke(tmp_path):
    f = run_smoke("bench_prefix_reuse.py", tmp_path)
    # 2 images x 3 questions: the 64 image tokens are prefilled once per image instead of once per question
    assert 0 < f["prefill_token_share"] < 0.7
    assert set(f["rows"]) == {"peer_1_at_a_time", "halbench_bs4", "prefix_reuse_bs4", "prefix_reuse_warm_bs4"}
    assert f["cold_pass_stats"]["image_misses"] == 2  # each timed pass encodes its 2 images again
    assert f["warm_cache"]["misses"] == 2  # the kept generator encodes each image once over all its passes


def test_bench_scoring_smoke(tmp_path):
    f = run_smoke("bench_scoring.py", tmp_path)
    assert f["n_answers"] == 180  # the 3 x 60-question test copies of the official POPE files
    assert set(f["rows"]) == {"official_evaluate_py", "halbench_score_file", "halbench_task_files",
                              "official_in_memory", "halbench_task_in_memory"}


def test_bench_chair_scoring_smoke(tmp_path):
    """Against the official chair.py when $HALBENCH_CHAIR_OFFICIAL names it (not shipped: no licence upstream);
    otherwise the script must say why it skipped, in its SUMMARY line and JSON."""
    f = run_smoke("bench_chair_scoring.py", tmp_path)
    if "skipped" in f:
        assert "HALBENCH_CHAIR_OFFICIAL" in f["skipped"] or "OPERA caption files" in f["skipped"]
        return
    (row,) = f["parity"]
    assert abs(row["official"]["CHAIRs"] - row["halbench"]["CHAIRs"]) < 0.01
    assert f["rows"]["official_warm"]["cpu_s"] > 0 and f["warm_ratio"] > 0


@pytest.mark.slow
def test_bench_lmms_eval_smoke(tmp_path):
    """lmms-eval from its own venv (benchmarks/setup_lmms_eval.sh) vs halbench eval on 4 + 4 samples: identical
    outputs are asserted inside the script; without the venv it reports why it skipped."""
    f = run_smoke("bench_lmms_eval.py", tmp_path, timeout=900)
    if "skipped" in f:
        assert "setup_lmms_eval.sh" in f["skipped"] or "import lmms_eval" in f["skipped"]
        pytest.skip(f["skipped"])
    assert set(f["rows"]) == {"lmms_eval_bs1", "halbench_bs1", "halbench_bs4"}
    assert f["metrics"]["halbench_bs4"]["chair_s"] == f["metrics"]["lmms_eval_bs1"]["chair_s"]
    assert all(r["cpu_s"] > 0 for r in f["rows"].values())


def test_bench_gpu_smoke_runs_the_cpu_path(tmp_path):
    f = run_smoke("bench_gpu.py", tmp_path)
    assert f["arch"] == "smoke" and f["peak_tflops"] is None
    assert f["generation_bs2"]["new_tokens_per_s"] > 0
    assert f["dpo"]["refcache"]["flops"] < f["dpo"]["liveref"]["flops"]


@pytest.mark.slow
def test_bench_dpo_smoke(tmp_path):
    f = run_smoke("bench_dpo.py", tmp_path, timeout=600)
    assert set(f["step_s"]) == {"trl", "trl_nockpt", "halbench_refcache", "halbench_liveref"}
    assert f["same_work_time"] > 0 and f["run_refcache_vs_trl_nockpt"] > 0 and f["precompute_cpu_s"] > 0
    assert all(v > 0 for v in f["memory_mb"].values())


@pytest.mark.slow
def test_bench_online_smoke(tmp_path):
    from halbench.errors import NotAvailableError
    from halbench.world import default_world

    try:
        default_world()
    except NotAvailableError as e:
        pytest.skip(f"needs the embedded world: {e}")
    f = run_smoke("bench_online.py", tmp_path, timeout=900)
    for run in ("fisao", "online_dpo"):
        shares = f["runs"][run]["share"]
        assert shares["generate"] > 0 and shares["policy_forward"] > 0
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)


# -- the pieces the figures rest on ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench_gpu():
    sys.path.insert(0, str(BENCH))
    import bench_gpu as module

    return module


def test_llava_7b_architecture_and_flop_model_match_the_real_model(bench_gpu):
    import torch
    from transformers import LlavaForConditionalGeneration

    config = bench_gpu.llava_config("llava-1.5-7b")
    with torch.device("meta"):  # no memory: only shapes
        model = LlavaForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == 7_063_427_072  # llava-hf/llava-1.5-7b-hf
    fm = bench_gpu.flop_model(config)
    lm_linear = sum(m.weight.numel() for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and n.startswith("model.language_model.layers."))
    vis_linear = sum(m.weight.numel() for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and n.startswith("model.vision_tower.encoder."))
    assert fm["n_lm"] == lm_linear and fm["n_params_vision"] == vis_linear
    assert fm["head"] == 2 * model.lm_head.weight.numel()
    # causal prefill of T tokens costs T(T+1)/2 attention pairs; a decode step at context c costs c
    one = bench_gpu.generation_flops(fm, 1, 10, 1)
    assert one == pytest.approx(fm["vision_image"] + fm["proj_image"] + 2 * fm["n_lm"] * 10 + fm["attn"] * 55
                                + fm["head"])
    assert bench_gpu.generation_flops(fm, 1, 10, 2) - one == pytest.approx(2 * fm["n_lm"] + fm["attn"] * 11
                                                                          + fm["head"])


def test_gpu_peak_table(bench_gpu):
    assert bench_gpu.gpu_peak("NVIDIA H100 80GB HBM3") == pytest.approx((989.4e12, 3.35e12))
    assert bench_gpu.gpu_peak("NVIDIA H100 PCIe")[0] == pytest.approx(756e12)
    assert bench_gpu.gpu_peak("NVIDIA H200") == pytest.approx((989.4e12, 4.8e12))
    assert bench_gpu.gpu_peak("NVIDIA A100-SXM4-80GB") == pytest.approx((312e12, 2.039e12))
    assert bench_gpu.gpu_peak("NVIDIA A100-SXM4-40GB")[1] == pytest.approx(1.555e12)
    assert bench_gpu.gpu_peak("Some Future GPU") == (None, None)


def test_meta_materialised_model_equals_a_normally_built_one(bench_gpu):
    """to_empty leaves storage uninitialised: the buffers must be recomputed and every weight drawn."""
    import torch
    from transformers import LlavaForConditionalGeneration

    model = bench_gpu.build_model("smoke", "cpu", torch.float32)
    reference = LlavaForConditionalGeneration(bench_gpu.llava_config("smoke"))
    for (n1, b1), (n2, b2) in zip(model.named_buffers(), reference.named_buffers(), strict=True):
        assert n1 == n2 and torch.equal(b1, b2), n1
    for (n1, p1), (_, p2) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert p1.std().item() == pytest.approx(p2.std().item(), rel=0.5, abs=1e-6), n1  # same init scheme
    inputs = bench_gpu.make_inputs(model.config, 2, 8, 4, "cpu", torch.float32)
    inputs.pop("prompt_len")
    assert torch.isfinite(model(**inputs).logits).all()


def test_profiler_charges_nested_time_to_the_innermost_label():
    sys.path.insert(0, str(BENCH))
    from common import Profiler

    class Work:
        def outer(self):
            time.sleep(0.02)
            self.inner()

        def inner(self):
            time.sleep(0.03)

    prof = Profiler()
    prof.patch(Work, "outer", "outer")
    prof.patch(Work, "inner", lambda stack: "inner_of_outer" if "outer" in stack else "inner")
    Work().outer()  # inactive: not counted
    assert prof.totals == {}
    prof.active = True
    Work().outer()
    Work().inner()
    prof.restore()
    assert Work.outer.__name__ == "outer" and not hasattr(Work.outer, "__wrapped__")
    assert 0.015 < prof.totals["outer"] < 0.045  # its own 20 ms, not the inner 30 ms
    assert prof.totals["inner_of_outer"] >= 0.025 and prof.totals["inner"] >= 0.025
    assert prof.calls == {"outer": 1, "inner_of_outer": 1, "inner": 1}
