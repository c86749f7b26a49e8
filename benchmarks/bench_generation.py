"""Batched generation (halbench HFModel) vs one request at a time (how lmms-eval and VLMEvalKit run LLaVA).

Peer, reproduced faithfully: lmms-eval's `llava_hf` model (lmms_eval/models/simple/llava_hf.py,
EvolvingLMMs-Lab/lmms-eval @ 19085f3) asserts `batch_size_per_gpu == 1` in generate_until and, per request,
calls `processor(images=[image], text=prompt)` then `model.generate(**inputs, do_sample=False, max_new_tokens,
pad_token_id=eos, eos_token_id=eos)` and decodes with skip_special_tokens. VLMEvalKit's LLaVA wrappers likewise
answer one message per `generate_inner` call. `peer_generate` below does exactly that on the same weights and
the same prompt text halbench renders, so the two differ only in batching.

Contenders (same model, same requests, greedy): peer (1 at a time), halbench batch_size=1 (our overhead),
halbench batch_size=B (default 16). The script asserts that every contender produced the same text for every
request, then prints samples/s and the ratio against the peer. Two workloads: POPE-style yes/no questions
(short answers, max_new_tokens 16) and CHAIR-style captions (max_new_tokens 64).

    python benchmarks/bench_generation.py                 # embedded world VLM, 32 requests per workload
    python benchmarks/bench_generation.py --smoke         # CI: tiny random LLaVA, 4 requests
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
from common import interleaved, ratio

POPE_OBJECTS = ["dog", "cat", "car", "chair", "pizza", "clock", "bus", "cup"]


def bench_images(n: int, tmp: Path) -> list[str]:
    """`n` image paths: the embedded world's images when it is built, else freshly drawn random ones."""
    try:
        from halbench.world import default_world

        found = sorted(p for p in Path(default_world().images_dir).iterdir()
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(found) >= n:
            return [str(p) for p in found[:n]]
    except Exception:  # noqa: BLE001 - world not built/importable: draw images instead
        pass
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def make_requests(workload: str, images: list[str], max_new_tokens: int):
    from halbench.schema import GenerationSettings, Request

    g = GenerationSettings(max_new_tokens=max_new_tokens)
    if workload == "pope":
        return [Request(id=f"pope-{i}", image=img, generation=g,
                        prompt=f"Is there a {POPE_OBJECTS[i % len(POPE_OBJECTS)]} in the image?")
                for i, img in enumerate(images)]
    return [Request(id=f"cap-{i}", image=img, generation=g, prompt="Please describe this image in detail.")
            for i, img in enumerate(images)]


def peer_generate(hf, requests) -> list[str]:
    """lmms-eval llava_hf.generate_until with batch_size 1 (see module docstring), on the same weights."""
    import torch

    from halbench.images import load_image

    model, processor, tok = hf.model, hf.processor, hf.tokenizer
    eos = tok.eos_token_id
    out = []
    for req in requests:
        text = hf.render_prompt(req)  # same prompt text for both contenders
        inputs = processor(images=[load_image(req.image)], text=text, return_tensors="pt").to(hf.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.no_grad():
            cont = model.generate(**inputs, do_sample=False, temperature=None, top_p=None, top_k=None,
                                  num_beams=1, max_new_tokens=req.generation.max_new_tokens, use_cache=True,
                                  pad_token_id=eos, eos_token_id=eos)
        cont = cont[:, inputs["input_ids"].shape[-1]:]
        out.append(tok.batch_decode(cont, skip_special_tokens=True)[0].strip())
    return out


def check_identical(results: dict[str, list[str]], requests) -> None:
    names = list(results)
    ref = results[names[0]]
    for name in names[1:]:
        bad = [i for i, (a, b) in enumerate(zip(ref, results[name])) if a != b]
        if bad or len(ref) != len(results[name]):
            i = bad[0] if bad else 0
            raise SystemExit(f"greedy outputs differ between {names[0]} and {name} on {len(bad)} of "
                             f"{len(ref)} requests; first: {requests[i].id}: {ref[i]!r} vs {results[name][i]!r}")


def run_workload(hf_by_bs: dict, workload: str, requests, args) -> dict:
    contenders = {"peer_1_at_a_time": lambda: peer_generate(hf_by_bs[1], requests)}
    for bs, hf in hf_by_bs.items():
        contenders[f"halbench_bs{bs}"] = (lambda h=hf: h.generate(requests))
    timings, results = interleaved(contenders, warmup=args.warmup, repeats=args.repeats)
    n_gen = [r.n_generated_tokens or 0 for r in results[f"halbench_bs{args.batch_size}"]]
    for name in list(results)[1:]:
        failed = [r for r in results[name] if r.error]
        if failed:
            raise SystemExit(f"{name}: halbench generation failed: {failed[0].error}")
        results[name] = [r.text for r in results[name]]
    check_identical(results, requests)
    n = len(requests)
    peer, peer_wall = timings["peer_1_at_a_time"].cpu_rate(n), timings["peer_1_at_a_time"].rate(n)
    # ratio on process CPU time (one torch thread); the wall-time ratio is kept next to it
    rows = {name: {"samples_per_s": t.rate(n), "samples_per_cpu_s": t.cpu_rate(n),
                   "ratio_vs_peer": ratio(t.cpu_rate(n), peer), "wall_ratio_vs_peer": ratio(t.rate(n), peer_wall),
                   **t.as_dict()} for name, t in timings.items()}
    print(f"\n[{workload}] {n} requests, max_new_tokens={requests[0].generation.max_new_tokens}, "
          f"{sum(n_gen) / n:.1f} generated tokens/request; outputs identical across contenders")
    for name, row in rows.items():
        if not isinstance(row, dict):
            continue
        print(f"  {name:<20} {row['samples_per_cpu_s']:8.2f} samples/CPU-s   x{row['ratio_vs_peer']:.2f} vs peer "
              f"(wall x{row['wall_ratio_vs_peer']:.2f}; median {row['cpu_median_s']:.3f} CPU-s of "
              f"{len(row['times_s'])})")
    rows["mean_generated_tokens"] = sum(n_gen) / n
    return rows


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n", type=int, default=32, help="Requests per workload.")
    p.add_argument("--model", type=Path, default=None, help="HF checkpoint dir (default: embedded VLM).")
    p.add_argument("--workloads", default="pope,caption")
    args = p.parse_args(argv)
    common.setup(args)
    if args.smoke:
        args.n, args.batch_size = 4, 2
    from halbench.models.hf import HFModel

    device, dtype = common.device_and_dtype(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path, label = (args.model, str(args.model)) if args.model else common.embedded_vlm(tmp, args.smoke)
        print(f"model: {label}; device {device}")
        hf1 = HFModel(path, device=device, dtype=dtype, batch_size=1)
        hfb = HFModel(path, device=device, dtype=dtype, batch_size=args.batch_size)
        hfb.model = hf1.model  # one copy of the weights: same model object for every contender
        images = bench_images(args.n, tmp)
        figures = {"model": label, "batch_size": args.batch_size, "n": args.n}
        for wl in args.workloads.split(","):
            mnt = {"pope": 16, "caption": 64}[wl] if not args.smoke else 4
            figures[wl] = run_workload({1: hf1, args.batch_size: hfb}, wl, make_requests(wl, images, mnt), args)
    key = f"halbench_bs{args.batch_size}"
    parts = [f"{wl} x{figures[wl][key]['ratio_vs_peer']:.2f}" for wl in args.workloads.split(",")]
    common.summary("bench_generation", f"batched (bs={args.batch_size}) vs one-at-a-time samples/s: "
                   + ", ".join(parts) + f" (target >= 4x at bs 16; {label.split(' (')[0]})", figures, args)


if __name__ == "__main__":
    main()
