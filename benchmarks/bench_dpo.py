"""halbench DPO vs TRL's DPOTrainer: time per optimizer step and peak memory, same model/data/batch/precision.

Both train the same checkpoint (the embedded world VLM, or a tiny random LLaVA with --smoke) on the same
preference pairs (one image, prompt, chosen, rejected per row) with: batch B pairs per step, no gradient
accumulation, AdamW, same learning rate, no weight decay, grad-norm clip 1.0, fp32 on CPU (bf16 on CUDA),
vision tower frozen (halbench's default; set on TRL's model by hand, TRL trains it otherwise), sigmoid loss,
beta 0.1, max_length 512, logging once at the end, no checkpoints until the final save.

Contenders, each in its own Python process (so peak memory belongs to it alone):
  trl                 trl.DPOTrainer with its defaults (ref_model=None: TRL loads a frozen copy;
                      precompute_ref_log_probs is refused by TRL 1.16 for vision datasets, so it runs the reference
                      every step; gradient_checkpointing=True is TRL 1.x's default; log-probs through its fused,
                      chunked LM head)
  trl_nockpt          the same with gradient_checkpointing=False (the same forward/backward work as halbench,
                      which has no activation checkpointing)
  halbench_refcache   halbench.training.dpo.train, precompute_ref=True (reference log-probs computed once
                      before step 1 and cached on disk; no reference model in memory while training)
  halbench_liveref    halbench.training.dpo.train, precompute_ref=False (reference model every step, like TRL)

Figures: median seconds per optimizer step over steps 3..N (per-step wall times from a step-end callback:
halbench `callbacks=`, TRL `TrainerCallback.on_step_end`); peak RSS growth of the process during the whole
training call (model load, reference, optimizer state, activations; CUDA: max_memory_allocated); and the
one-off reference precompute time of halbench_refcache. Setup costs are reported but not in the step time.
Headline (same work): halbench_liveref vs trl_nockpt per step (both: a policy and a reference forward, no
activation checkpointing). Whole run: CPU time from the start of the training call to the end of the last
step (setup, data, the reference precompute, every step) with steps x batch / pairs epochs: halbench_refcache
vs TRL, so the cache's one-off pass is counted.

    python benchmarks/bench_dpo.py --steps 24 --pairs 32 --batch-size 4 --repeats 2   # 3 epochs of 8 steps
    python benchmarks/bench_dpo.py --steps 20 --batch-size 4
    python benchmarks/bench_dpo.py --smoke
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import common
from common import PeakRSS, ratio, run_child

CONTENDERS = ("trl", "trl_nockpt", "halbench_refcache", "halbench_liveref")
OBJECTS = ["dog", "cat", "car", "chair", "pizza", "clock", "bus", "cup", "bed", "tv", "laptop", "book"]


def write_pairs(out_dir: Path, n: int, image_paths: list[str]) -> Path:
    """`n` preference rows in halbench's JSONL format: chosen names objects, rejected adds an absent one."""
    rows = []
    for i in range(n):
        a, b, c = (OBJECTS[(i + k * 5) % len(OBJECTS)] for k in range(3))
        rows.append({"image": image_paths[i % len(image_paths)], "prompt": "Please describe this image in detail.",
                     "chosen": f"The image shows a {a} next to a {b}.",
                     "rejected": f"The image shows a {a} next to a {b} and a {c}."})
    path = out_dir / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def now() -> tuple[float, float]:
    """(wall, process CPU) seconds. CPU time of a 1-thread process barely moves when other users load the
    machine, wall time does: both are reported, the ratios of the two should agree when the run was clean."""
    return time.perf_counter(), time.process_time()


def step_stats(stamps: list[tuple[float, float]], skip: int) -> dict:
    """Per-step wall and CPU durations from step-end stamps (the first `skip` steps are warm-up)."""
    wall = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])][max(0, skip - 1):]
    cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])][max(0, skip - 1):]
    if not wall:
        raise SystemExit(f"too few steps ({len(stamps)}) to time: raise --steps")
    return {"step_s_median": statistics.median(wall), "step_cpu_s_median": statistics.median(cpu),
            "step_s_all": wall, "n_timed_steps": len(wall)}


# ----------------------------------------------------------------------------------------------- children
def child_halbench(args) -> dict:
    from halbench.training import dpo

    sw = common.Stopwatch()
    pre_cpu = [0.0]
    original = dpo.reference_logps

    def timed_reference(*a, **k):  # module global used by train: its CPU time is the precompute's cost
        c0 = time.process_time()
        try:
            return original(*a, **k)
        finally:
            pre_cpu[0] += time.process_time() - c0

    dpo.reference_logps = sw.wrap("reference_precompute", timed_reference)
    stamps: list[tuple[float, float]] = []
    cfg = dpo.Config(model=str(args.model), data=str(args.data), output_dir=str(args.out / "run"), seed=0,
                     per_device_batch_size=args.batch_size, max_steps=args.steps, learning_rate=args.lr,
                     weight_decay=0.0, max_grad_norm=1.0, warmup_ratio=0.1, max_length=512, beta=0.1,
                     logging_steps=args.steps, save_steps=0, resume=False, precompute_ref=args.refcache,
                     ref_cache_dir=str(args.out / "refcache"))
    rss: list[int] = []

    def on_step(step):
        stamps.append(now())
        rss.append(common.current_rss_bytes())

    t0, c0 = now()
    with PeakRSS(cuda=args.cuda) as mem:
        dpo.train(cfg, callbacks=[on_step])
    total, total_cpu = now()[0] - t0, time.process_time() - c0
    return {**step_stats(stamps, args.skip), **mem.as_dict(), **rss_split(mem, rss), "total_s": total,
            "total_cpu_s": total_cpu, "train_cpu_s": stamps[-1][1] - c0, "setup_s": stamps[0][0] - t0,
            "reference_precompute_s": sw.totals.get("reference_precompute", 0.0),
            "reference_precompute_cpu_s": pre_cpu[0]}


def rss_split(mem: PeakRSS, rss: list[int]) -> dict:
    """RSS growth up to the end of step 1 (model(s), data, reference, optimizer state) and the rest."""
    after_step1 = (rss[0] - mem._base) / common.MB
    return {"rss_after_step1_mb": round(after_step1, 1),
            "rss_growth_after_step1_mb": round(mem.peak_rss_delta_mb - after_step1, 1)}


def trl_dataset(data: Path):
    from datasets import Dataset

    from halbench.images import load_image

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    return Dataset.from_list([{
        "images": [load_image(r["image"])],
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "chosen": [{"role": "assistant", "content": r["chosen"]}],
        "rejected": [{"role": "assistant", "content": r["rejected"]}],
    } for r in rows])


def child_trl(args) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    stamps: list[tuple[float, float]] = []
    rss: list[int] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(now())
            rss.append(common.current_rss_bytes())

    t0, c0 = now()
    with PeakRSS(cuda=args.cuda) as mem:
        dataset = trl_dataset(args.data)  # inside, like halbench's data loading + validation
        dtype = torch.bfloat16 if args.cuda else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype)
        for name, p in model.named_parameters():  # same trainable set as halbench's freeze_vision_tower
            if ".vision_tower." in f".{name}":
                p.requires_grad_(False)
        processor = AutoProcessor.from_pretrained(args.model, padding_side="left")
        config = DPOConfig(output_dir=str(args.out / "trl"), per_device_train_batch_size=args.batch_size,
                           gradient_accumulation_steps=1, max_steps=args.steps, learning_rate=args.lr,
                           weight_decay=0.0, max_grad_norm=1.0, warmup_steps=max(0, int(0.1 * args.steps)),
                           lr_scheduler_type="linear", logging_steps=args.steps, save_strategy="no",
                           report_to=[], seed=0, max_length=512, beta=0.1, loss_type=["sigmoid"],
                           use_cpu=not args.cuda, bf16=args.cuda, fp16=False, dataloader_num_workers=0,
                           optim="adamw_torch", gradient_checkpointing=not args.no_ckpt)
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor,
                             callbacks=[Stamp()])
        trainer.train()
    total, total_cpu = now()[0] - t0, time.process_time() - c0
    return {**step_stats(stamps, args.skip), **mem.as_dict(), **rss_split(mem, rss), "total_s": total,
            "total_cpu_s": total_cpu, "train_cpu_s": stamps[-1][1] - c0, "setup_s": stamps[0][0] - t0}


def preimport() -> None:
    """Import both stacks in every child before measuring, so the memory figure is the training's, not the
    libraries' (each side imports lazily inside its train call otherwise)."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: F401
    from trl import DPOConfig, DPOTrainer  # noqa: F401

    import halbench.models.hf  # noqa: F401
    import halbench.training.data  # noqa: F401
    import halbench.training.dpo  # noqa: F401
    import halbench.training.loop  # noqa: F401
    import halbench.training.ref_cache  # noqa: F401


def run_as_child(args) -> None:
    import torch

    preimport()

    args.cuda = torch.cuda.is_available() and args.device != "cpu"
    fig = child_trl(args) if args.child == "trl" else child_halbench(args)
    fig["contender"] = args.child + ("_refcache" if args.refcache and args.child == "halbench" else "") + \
        ("_nockpt" if args.no_ckpt and args.child == "trl" else "")
    Path(args.json).write_text(json.dumps(fig, default=float))


# ----------------------------------------------------------------------------------------------- parent
def contender_argv(name: str, args, model: Path, data: Path, work: Path) -> list[str]:
    kind = "trl" if name.startswith("trl") else "halbench"
    argv = ["--child", kind, "--model", str(model), "--data", str(data), "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--out", str(work / name),
            "--skip", str(args.skip), "--threads", str(args.threads)]
    if args.device:
        argv += ["--device", args.device]
    argv += ["--refcache"] if name == "halbench_refcache" else []
    return argv + (["--no-ckpt"] if name == "trl_nockpt" else [])


def report(results: dict[str, list[dict]], cuda: bool) -> dict:
    """Medians over repeats, a table, and the ratios. On CPU the ratios use process CPU time (wall time on the
    shared machine moves with other users' load: ratios from it varied 0.46-0.74 between runs); on CUDA, wall."""
    best = {k: min(v, key=lambda f: f["step_s_median"]) for k, v in results.items()}
    step = {k: statistics.median(f["step_s_median"] for f in v) for k, v in results.items()}
    cpu = {k: statistics.median(f["step_cpu_s_median"] for f in v) for k, v in results.items()}
    mem_key = "cuda_peak_mb" if "cuda_peak_mb" in best["trl"] else "peak_rss_delta_mb"
    mem = {k: statistics.median(f[mem_key] for f in v) for k, v in results.items()}
    split = {k: (statistics.median(f["rss_after_step1_mb"] for f in v),
                 statistics.median(f["rss_growth_after_step1_mb"] for f in v)) for k, v in results.items()}
    print(f"\n{'contender':<20}{'s/step':>9}{'vs trl':>8}{'cpu s/step':>11}{'vs trl':>8}{mem_key:>20}{'vs trl':>8}"
          f"{'RSS@step1':>10}{'+later':>8}{'setup s':>9}")
    for k in results:
        print(f"{k:<20}{step[k]:>9.4f}{ratio(step[k], step['trl']):>8.2f}{cpu[k]:>11.4f}"
              f"{ratio(cpu[k], cpu['trl']):>8.2f}{mem[k]:>20.1f}{ratio(mem[k], mem['trl']):>8.2f}"
              f"{split[k][0]:>10.1f}{split[k][1]:>8.1f}{best[k]['setup_s']:>9.1f}")
    pre = best["halbench_refcache"]["reference_precompute_s"]
    print(f"reference precompute (halbench_refcache, once per model+data, then read from disk): {pre:.2f}s")
    # whole run, setup + reference precompute + every step up to the last step's end (CPU time)
    run_cpu = {k: statistics.median(f["train_cpu_s"] for f in v) for k, v in results.items()}
    print("whole training run to the last step, CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in run_cpu.items()))
    t = step if cuda else cpu
    return {"step_s": step, "step_cpu_s": cpu, "time_basis": "wall" if cuda else "process CPU time",
            "memory_mb": mem, "memory_kind": mem_key, "precompute_s": pre, "runs": results,
            "run_cpu_s": run_cpu,
            "precompute_cpu_s": statistics.median(f["reference_precompute_cpu_s"]
                                                  for f in results["halbench_refcache"]),
            "same_work_time": ratio(t["halbench_liveref"], t["trl_nockpt"]),
            "same_work_memory": ratio(mem["halbench_liveref"], mem["trl_nockpt"]),
            "run_refcache_vs_trl_nockpt": ratio(run_cpu["halbench_refcache"], run_cpu["trl_nockpt"]),
            "run_refcache_vs_trl": ratio(run_cpu["halbench_refcache"], run_cpu["trl"]),
            "run_liveref_vs_trl_nockpt": ratio(run_cpu["halbench_liveref"], run_cpu["trl_nockpt"]),
            "halbench_vs_trl_time": ratio(t["halbench_refcache"], t["trl"]),
            "halbench_vs_trl_wall_time": ratio(step["halbench_refcache"], step["trl"]),
            "halbench_vs_trl_memory": ratio(mem["halbench_refcache"], mem["trl"]),
            "halbench_vs_trl_nockpt_time": ratio(t["halbench_refcache"], t["trl_nockpt"]),
            "halbench_vs_trl_nockpt_memory": ratio(mem["halbench_refcache"], mem["trl_nockpt"]),
            "liveref_vs_trl_time": ratio(t["halbench_liveref"], t["trl"]),
            "refcache_speedup": ratio(t["halbench_liveref"], t["halbench_refcache"])}


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pairs", type=int, default=None, help="Rows in the data (default: steps x batch).")
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--skip", type=int, default=2, help="Warm-up steps left out of the step time.")
    p.add_argument("--model", type=Path, default=None, help="HF checkpoint dir (overrides --arch).")
    p.add_argument("--arch", choices=["embedded", "wide"], default="embedded",
                   help="embedded: the embedded world VLM (its architecture with random weights when the world is "
                        "not built); wide: a random LLaVA whose weights (14M LM params, 55 MB fp32) dominate memory, "
                        "so the reference model / optimizer state differences show.")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--child", choices=["trl", "halbench"], help=argparse_hidden())
    p.add_argument("--data", type=Path, help=argparse_hidden())
    p.add_argument("--out", type=Path, help=argparse_hidden())
    p.add_argument("--refcache", action="store_true", help=argparse_hidden())
    p.add_argument("--no-ckpt", action="store_true", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        common.setup(args)
        return run_as_child(args)
    common.setup(args)
    if args.smoke:
        args.steps, args.batch_size, args.skip = 3, 2, 1
    from bench_generation import bench_images

    names = args.contenders.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        label = str(model) if model else ""
        if model is None and args.arch == "wide" and not args.smoke:
            model = common.make_random_llava(tmp / "wide", image_size=112, patch_size=14, vision_hidden=128,
                                             vision_layers=2, text_hidden=512, text_layers=4, mlp_ratio=3)
            label = "wide random LLaVA (LM width 512 x 4 layers, CLIP 112px/14 width 128 x 2)"
        elif model is None:
            model, label = common.embedded_vlm(tmp, args.smoke)
        data = write_pairs(tmp, args.pairs or args.steps * args.batch_size, bench_images(8, tmp))
        print(f"model: {label}; {args.steps} steps x {args.batch_size} pairs; contenders {names}")
        results: dict[str, list[dict]] = {n: [] for n in names}
        for rep in range(args.repeats):  # round-robin, so load bursts hit every contender
            for n in names:
                fig = run_child(Path(__file__), contender_argv(n, args, model, data, tmp / f"r{rep}"))
                results[n].append(fig)
                print(f"  [{rep}] {n:<18} {fig['step_s_median']:.4f} s/step ({fig['step_cpu_s_median']:.4f} CPU), "
                      f"{fig.get('cuda_peak_mb', fig['peak_rss_delta_mb']):.1f} MB peak, setup {fig['setup_s']:.1f}s")
    if set(names) != set(CONTENDERS):
        return common.summary("bench_dpo", f"partial run {results}", {"runs": results}, args)
    import torch

    cuda = torch.cuda.is_available() and args.device != "cpu"
    n_pairs = args.pairs or args.steps * args.batch_size
    epochs = args.steps * args.batch_size / n_pairs
    figures = {"model": label, "steps": args.steps, "batch_size": args.batch_size, "pairs": n_pairs,
               "epochs": epochs, **report(results, cuda)}
    common.summary(
        "bench_dpo",
        f"same work (live reference, no activation checkpointing on either side): step x{figures['same_work_time']:.2f}"
        f" of TRL ({figures['time_basis']}; target <= 0.75), memory x{figures['same_work_memory']:.2f}; whole run of "
        f"{epochs:g} epochs with the reference cache counted: x{figures['run_refcache_vs_trl_nockpt']:.2f} of TRL "
        f"(no ckpt), x{figures['run_refcache_vs_trl']:.2f} of TRL defaults (target <= 0.7); cached step vs TRL "
        f"defaults x{figures['halbench_vs_trl_time']:.2f} (not the same work: TRL recomputes activations and runs "
        f"a reference forward)", figures, args)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
