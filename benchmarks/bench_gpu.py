"""GPU path: a random-weight model with the real LLaVA-1.5-7B architecture; generation and DPO tokens/s, MFU.

Model: `LlavaForConditionalGeneration` from a `LlavaConfig` equal to llava-hf/llava-1.5-7b-hf's config.json:
CLIP ViT-L/14-336 vision tower (24 layers, width 1024, 577 positions, quick_gelu), 2-layer GELU projector
1024 -> 4096 -> 4096, Llama-2-7B language model (32 layers, width 4096, MLP 11008, 32 heads, vocab 32064),
vision_feature_layer -2, "default" feature selection (576 image tokens). Built on the meta device (no memory,
no init), materialised with `to_empty` on the GPU in bf16, then `initialize_weights()` draws the random
weights there and recomputes the non-persistent buffers (RoPE inv_freq, CLIP position ids); the script checks
every parameter and buffer is finite. Random weights give honest speed figures: the FLOPs and bytes moved do
not depend on the values. Attention: PyTorch SDPA (flash / memory-efficient kernels on CUDA).

Without CUDA the script runs automatically a scaled-down architecture of the same structure (--arch
cpu-small: CLIP 112px/14 -> 64 image tokens, width 128 x 4 layers; Llama width 256 x 4 layers, vocab 32064)
in fp32, and reports achieved GFLOP/s (no MFU: a CPU has no single peak figure; pass --peak-tflops to get one).

Measurements (each the median of --repeats after --warmup):
- generation, greedy, every row forced to exactly --new-tokens tokens (min_new_tokens): batch 1 (the
  one-at-a-time peer) and batch --gen-batch; prefill timed separately; new tokens/s and MFU.
- DPO step (vision tower frozen, projector + LM trained, AdamW, loss = halbench.training.dpo.loss_from_logps,
  sigmoid, beta 0.1): policy forward + backward on --dpo-pairs chosen + rejected sequences of (prompt + 576
  image tokens + --response-tokens) with reference log-probs from the cache (halbench's default), and the same
  step plus a reference forward (what TRL does every step for vision data); tokens/s = sequence tokens the
  policy processes per second; MFU. Activation checkpointing on by default on CUDA (--no-checkpointing to disable).

FLOP formula (model FLOPs, PaLM-style MFU; multiply-add = 2 FLOPs; embeddings/norms/softmax not counted):
  N_lm   = L * (d*(h*k) + 2*d*(g*k) + (h*k)*d + 3*d*f)          linear weights of the LM layers
           (L layers, width d, h query heads / g KV heads of size k, MLP width f)
  F_lm(tokens, pairs) = 2*N_lm*tokens + 4*L*(h*k)*pairs          pairs = (query, key) pairs attended
           (causal prefill of T tokens: T(T+1)/2 pairs; a decode step at context c: c pairs)
  F_head(n) = 2*d*V*n                                            LM head on n positions (generate: last only)
  F_vision (per image) = 2*N_vis*P + 4*L_v*d_v*P^2 + 2*(3*p^2*d_v)*(P-1)   P = 577 positions, all 24 layers
  F_proj (per image)   = 2*(d_v*d + d*d)*(P-1)
  generation = sum over prefill and the new_tokens-1 decode forwards of the above
  DPO step (policy) = F_vision + 3*(F_proj + F_lm + F_head(all)) over 2*pairs sequences (backward = 2x
           forward; the frozen tower runs forward only); + one forward of everything without the ref cache.
  Activation checkpointing recomputes the LM forward (hardware FLOPs ~4/3 of model FLOPs); MFU counts model
  FLOPs only, as PaLM defines it.
  MFU = FLOPs / time / peak, peak = dense bf16 tensor-core FLOP/s from the device name: H100 SXM 989.4,
  H100 NVL 835, H100 PCIe 756, H200 989.4, A100 312, L40S 362 TFLOP/s (NVIDIA data sheets, no sparsity).
  Decode is memory-bound: its report also gives memory-bandwidth utilisation (weights + KV cache bytes read
  per step / step time / HBM bandwidth: H100 SXM 3.35, NVL 3.9, PCIe 2.0, H200 4.8, A100-80GB 2.04,
  A100-40GB 1.56 TB/s).

    python benchmarks/bench_gpu.py                      # CUDA: LLaVA-1.5-7B; CPU: cpu-small
    python benchmarks/bench_gpu.py --arch cpu-small --device cpu
    python benchmarks/bench_gpu.py --smoke
"""

from __future__ import annotations

import argparse

import common
from common import measure, ratio

LLAVA_7B = {
    "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "text": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=32001, bos_token_id=1, eos_token_id=2),
    "image_token_index": 32000, "pad_token_id": 32001,
}
ARCHS = {
    "llava-1.5-7b": LLAVA_7B,
    "cpu-small": {**LLAVA_7B,
                  "vision": {**LLAVA_7B["vision"], "hidden_size": 128, "intermediate_size": 512,
                             "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 112},
                  "text": {**LLAVA_7B["text"], "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
                           "num_attention_heads": 8, "num_key_value_heads": 8}},
    "smoke": {**LLAVA_7B,
              "vision": {**LLAVA_7B["vision"], "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "image_size": 56},
              "text": {**LLAVA_7B["text"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1024,
                       "pad_token_id": 1023, "max_position_embeddings": 512},
              "image_token_index": 1022, "pad_token_id": 1023},
}
#: (substring of torch.cuda.get_device_name, dense bf16 TFLOP/s, HBM TB/s); first match wins.
GPU_PEAKS = [("H200", 989.4, 4.8), ("H100 NVL", 835.0, 3.9), ("H100 PCIe", 756.0, 2.0), ("H100", 989.4, 3.35),
             ("A100-SXM4-40GB", 312.0, 1.555), ("A100-PCIE-40GB", 312.0, 1.555), ("A100", 312.0, 2.039),
             ("L40S", 362.0, 0.864)]


def gpu_peak(name: str) -> tuple[float | None, float | None]:
    """(peak dense bf16 FLOP/s, HBM bytes/s) for a device name, (None, None) when unknown."""
    for key, tflops, tbps in GPU_PEAKS:
        if key.lower() in name.lower():
            return tflops * 1e12, tbps * 1e12
    return None, None


# ----------------------------------------------------------------------------------------------- model
def llava_config(arch: str):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    a = ARCHS[arch]
    config = LlavaConfig(vision_config=CLIPVisionConfig(**a["vision"]), text_config=LlamaConfig(**a["text"]),
                         image_token_index=a["image_token_index"], pad_token_id=a["pad_token_id"],
                         projector_hidden_act="gelu", vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = "sdpa"
    return config


def build_model(arch: str, device: str, dtype):
    """Meta-device construction, `to_empty` on `device` in `dtype`, random init there; checked finite."""
    import torch
    from transformers import LlavaForConditionalGeneration

    config = llava_config(arch)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        model.initialize_weights()
    check_materialised(model)
    return model.eval()


def check_materialised(model) -> None:
    """Every parameter and buffer finite, CLIP position ids = arange (to_empty leaves garbage otherwise)."""
    import torch

    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise RuntimeError(f"{name} is not finite after initialisation (left uninitialised by to_empty?)")
        if name.endswith("position_ids") and not torch.equal(t.flatten().cpu(), torch.arange(t.numel())):
            raise RuntimeError(f"{name} is not arange after initialisation")


def make_inputs(config, batch: int, n_text: int, response: int, device: str, dtype, seed: int = 0) -> dict:
    """Random prompt ids shaped like `USER: <image>\\n{question} ASSISTANT: {response}` (no padding)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    vc, tc = config.vision_config, config.text_config
    n_img = (vc.image_size // vc.patch_size) ** 2
    high = min(config.image_token_index, tc.vocab_size) - 1

    def text(n):
        return torch.randint(3, high, (batch, n), generator=g)

    image = torch.full((batch, n_img), config.image_token_index)
    ids = torch.cat([torch.ones(batch, 1, dtype=torch.long), text(n_text // 2), image,
                     text(n_text - n_text // 2), text(response)], dim=1)
    pixels = torch.randn(batch, 3, vc.image_size, vc.image_size, generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype), "prompt_len": ids.shape[1] - response}


# ----------------------------------------------------------------------------------------------- FLOPs
def flop_model(config) -> dict:
    """Per-unit FLOP coefficients of the formula in the module docstring."""
    tc, vc = config.text_config, config.vision_config
    d, L, f, V = tc.hidden_size, tc.num_hidden_layers, tc.intermediate_size, tc.vocab_size
    h, g = tc.num_attention_heads, tc.num_key_value_heads
    k = getattr(tc, "head_dim", None) or d // h
    dv, Lv, fv, p = vc.hidden_size, vc.num_hidden_layers, vc.intermediate_size, vc.patch_size
    P = (vc.image_size // p) ** 2 + 1
    n_lm = L * (d * h * k + 2 * d * g * k + h * k * d + 3 * d * f)
    n_vis = Lv * (4 * dv * dv + 2 * dv * fv)
    return {"n_lm": n_lm, "attn": 4 * L * h * k, "head": 2 * d * V,
            "vision_image": 2 * n_vis * P + 4 * Lv * dv * P * P + 2 * 3 * p * p * dv * (P - 1),
            "proj_image": 2 * (dv * d + d * d) * (P - 1), "n_params_lm_linear": n_lm, "n_params_vision": n_vis}


def generation_flops(fm: dict, batch: int, prompt: int, new: int) -> float:
    prefill = (batch * (fm["vision_image"] + fm["proj_image"]) + 2 * fm["n_lm"] * batch * prompt
               + fm["attn"] * batch * prompt * (prompt + 1) / 2 + fm["head"] * batch)
    decode = sum(2 * fm["n_lm"] * batch + fm["attn"] * batch * (prompt + s) + fm["head"] * batch
                 for s in range(1, new))
    return prefill + decode


def dpo_flops(fm: dict, n_seq: int, seq: int, with_ref: bool) -> float:
    fwd_trainable = (n_seq * fm["proj_image"] + 2 * fm["n_lm"] * n_seq * seq
                     + fm["attn"] * n_seq * seq * (seq + 1) / 2 + fm["head"] * n_seq * seq)
    vision = n_seq * fm["vision_image"]
    return vision + 3 * fwd_trainable + (vision + fwd_trainable if with_ref else 0.0)


def decode_bytes(config, batch: int, prompt: int, new: int, bytes_per: int) -> float:
    """Bytes read by one average decode step: LM + head weights, and the KV cache of every row."""
    tc = config.text_config
    k = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    fm = flop_model(config)
    weights = (fm["n_lm"] + tc.hidden_size * tc.vocab_size) * bytes_per
    kv = 2 * tc.num_hidden_layers * tc.num_key_value_heads * k * batch * (prompt + new / 2) * bytes_per
    return weights + kv


# ----------------------------------------------------------------------------------------------- runs
def run_generation(model, config, args, batch: int, cuda: bool) -> dict:
    import torch

    inp = make_inputs(config, batch, args.text_tokens, 0, args.device, model.dtype)
    prompt = inp.pop("prompt_len")
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
              eos_token_id=config.text_config.eos_token_id, pad_token_id=config.pad_token_id)
    with torch.inference_mode():
        t_pre, _ = measure(lambda: model(**inp, logits_to_keep=1, use_cache=True), warmup=args.warmup,
                           repeats=args.repeats, cuda=cuda)
        t_all, out = measure(lambda: model.generate(**inp, **kw), warmup=args.warmup, repeats=args.repeats,
                             cuda=cuda)
    n_new = out.shape[1] - inp["input_ids"].shape[1]
    if n_new != args.new_tokens:
        raise RuntimeError(f"generate returned {n_new} new tokens, expected {args.new_tokens}")
    fl = generation_flops(flop_model(config), batch, prompt, args.new_tokens)
    decode_s = max(t_all.median - t_pre.median, 1e-9)
    res = {"batch": batch, "prompt_tokens": prompt, "new_tokens": args.new_tokens, "total_s": t_all.median,
           "prefill_s": t_pre.median, "new_tokens_per_s": batch * args.new_tokens / t_all.median,
           "decode_tokens_per_s": batch * (args.new_tokens - 1) / decode_s, "flops": fl,
           "achieved_tflops": fl / t_all.median / 1e12}
    res["decode_step_bytes"] = decode_bytes(config, batch, prompt, args.new_tokens, model.dtype.itemsize)
    res["decode_bytes_per_s"] = res["decode_step_bytes"] * (args.new_tokens - 1) / decode_s
    return res


def dpo_step_fns(model, config, args):
    """(policy step with cached reference log-probs, the same step with a live reference forward)."""
    import torch

    from halbench.training.dpo import DPOSettings, loss_from_logps
    from halbench.training.losses import token_logps

    settings = DPOSettings()
    inp = make_inputs(config, 2 * args.dpo_pairs, args.text_tokens, args.response_tokens, args.device, model.dtype)
    prompt = inp.pop("prompt_len")
    labels = inp["input_ids"].clone()
    labels[:, :prompt] = -100
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0, fused=args.device.startswith("cuda"))

    def reference():
        with torch.no_grad():
            logps, _ = token_logps(model(**inp, use_cache=False).logits, labels)
        return logps.sum(1).chunk(2)

    cached = [t.detach().clone() for t in reference()]

    def step(ref=None):
        ref_c, ref_r = ref if ref is not None else cached
        logps, mask = token_logps(model(**inp, use_cache=False).logits, labels)
        loss, _ = loss_from_logps(settings, logps, mask, ref_c, ref_r)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return (lambda: step()), (lambda: step(reference())), inp["input_ids"].shape


def run_dpo(model, config, args, cuda: bool) -> dict:
    import torch

    for name, p in model.named_parameters():  # halbench's default: vision tower frozen
        p.requires_grad_(not name.startswith("model.vision_tower."))
    if args.checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    model.train()
    cached_step, live_step, shape = dpo_step_fns(model, config, args)
    out = {"pairs": args.dpo_pairs, "sequences": shape[0], "seq_len": shape[1],
           "activation_checkpointing": bool(args.checkpointing)}
    fm = flop_model(config)
    for name, fn, with_ref in (("refcache", cached_step, False), ("liveref", live_step, True)):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t, loss = measure(fn, warmup=max(1, args.warmup), repeats=args.repeats, cuda=cuda)
        if not torch.isfinite(loss):
            raise RuntimeError(f"DPO loss is {loss} ({name})")
        fl = dpo_flops(fm, shape[0], shape[1], with_ref)
        out[name] = {"step_s": t.median, "tokens_per_s": shape[0] * shape[1] / t.median, "flops": fl,
                     "achieved_tflops": fl / t.median / 1e12}
        if cuda:
            out[name]["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / common.MB
    model.eval()
    return out


# ----------------------------------------------------------------------------------------------- main
def add_mfu(block: dict, peak: float | None, bw: float | None) -> None:
    if peak:
        block["mfu"] = block["achieved_tflops"] * 1e12 / peak
    if bw and "decode_bytes_per_s" in block:
        block["decode_mbu"] = block["decode_bytes_per_s"] / bw


def fmt_mfu(block: dict) -> str:
    return f"MFU {block['mfu']:.1%}" if "mfu" in block else f"{block['achieved_tflops'] * 1e3:.2f} GFLOP/s"


def parse_args(argv):
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--arch", choices=list(ARCHS), default=None,
                   help="Default: llava-1.5-7b on CUDA, cpu-small on CPU (smoke with --smoke).")
    p.add_argument("--gen-batch", type=int, default=None, help="Generation batch (default 16 CUDA, 8 CPU).")
    p.add_argument("--new-tokens", type=int, default=None, help="Tokens generated per row (128 CUDA, 32 CPU).")
    p.add_argument("--text-tokens", type=int, default=40, help="Prompt text tokens around the image tokens.")
    p.add_argument("--dpo-pairs", type=int, default=None, help="Preference pairs per DPO step (4 CUDA, 2 CPU).")
    p.add_argument("--response-tokens", type=int, default=None, help="Response tokens per sequence (128/32).")
    p.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="Activation checkpointing in the DPO step (default: on with CUDA, off on CPU).")
    p.add_argument("--peak-tflops", type=float, default=None, help="Override the detected peak (TFLOP/s).")
    p.add_argument("--skip-dpo", action="store_true")
    return p.parse_args(argv)


def resolve_defaults(args, cuda: bool) -> None:
    big = cuda and not args.smoke
    args.arch = args.arch or ("smoke" if args.smoke else "llava-1.5-7b" if cuda else "cpu-small")
    args.gen_batch = args.gen_batch or (16 if big else 2 if args.smoke else 8)
    args.new_tokens = args.new_tokens or (128 if big else 4 if args.smoke else 32)
    args.dpo_pairs = args.dpo_pairs or (4 if big else 1 if args.smoke else 2)
    args.response_tokens = args.response_tokens or (128 if big else 8 if args.smoke else 32)
    args.checkpointing = cuda if args.checkpointing is None else args.checkpointing
    if args.smoke:
        args.text_tokens = 8


def main(argv=None) -> None:
    import torch

    args = parse_args(argv)
    common.setup(args)
    device, dtype = common.device_and_dtype(args.device)
    args.device, cuda = device, device.startswith("cuda")
    resolve_defaults(args, cuda)
    name = torch.cuda.get_device_name(0) if cuda else common.machine_info()["cpu"]
    peak, bw = gpu_peak(name) if cuda else (None, None)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak
    model = build_model(args.arch, device, dtype)
    config = model.config
    n_params = common.count_params(model)
    print(f"{args.arch}: {n_params / 1e9:.3f} B parameters, {dtype}, on {name}; peak "
          f"{peak / 1e12 if peak else float('nan'):.1f} TFLOP/s")
    figures = {"arch": args.arch, "device": name, "dtype": str(dtype), "n_params": n_params,
               "peak_tflops": peak / 1e12 if peak else None, "flop_model": flop_model(config)}
    for bs in sorted({1, args.gen_batch}):
        g = figures[f"generation_bs{bs}"] = run_generation(model, config, args, bs, cuda)
        add_mfu(g, peak, bw)
        print(f"generation bs={bs:<3} {g['new_tokens_per_s']:>9.1f} new tok/s (prefill {g['prefill_s'] * 1e3:.1f} ms "
              f"for {g['prompt_tokens']} tokens/row), {fmt_mfu(g)}"
              + (f", decode MBU {g['decode_mbu']:.1%}" if "decode_mbu" in g else ""))
    gen = figures[f"generation_bs{args.gen_batch}"]
    gen_ratio = ratio(gen["new_tokens_per_s"], figures["generation_bs1"]["new_tokens_per_s"])
    text = f"{args.arch} on {name}: generation {gen['new_tokens_per_s']:.0f} tok/s at bs {args.gen_batch} " \
           f"(x{gen_ratio:.1f} vs bs 1), {fmt_mfu(gen)}"
    if not args.skip_dpo:
        try:
            d = figures["dpo"] = run_dpo(model, config, args, cuda)
        except torch.cuda.OutOfMemoryError as e:  # keep the generation figures; say what to change
            figures["dpo_error"] = f"CUDA out of memory: {str(e)[:200]}"
            print(f"DPO step: out of memory with {args.dpo_pairs} pairs; retry with --dpo-pairs "
                  f"{max(1, args.dpo_pairs // 2)} or --response-tokens {args.response_tokens // 2}")
            return common.summary("bench_gpu", text + "; DPO: out of memory (see output)", figures, args)
        for k in ("refcache", "liveref"):
            add_mfu(d[k], peak, bw)
            print(f"DPO step ({k:<8}) {d[k]['step_s'] * 1e3:>9.1f} ms, {d[k]['tokens_per_s']:>9.0f} tok/s, "
                  f"{fmt_mfu(d[k])}" + (f", peak {d[k]['cuda_peak_mb'] / 1024:.1f} GiB" if cuda else ""))
        text += f"; DPO {d['refcache']['tokens_per_s']:.0f} tok/s, {fmt_mfu(d['refcache'])} " \
                f"(ref cache x{ratio(d['liveref']['step_s'], d['refcache']['step_s']):.2f} vs live reference)"
    common.summary("bench_gpu", text, figures, args)


if __name__ == "__main__":
    main()
