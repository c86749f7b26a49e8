"""FiSAO and online DPO: where a training step's time goes (generating, verifying/scoring, forward, backward).

Runs halbench's own trainers (training/fisao.py, training/online_dpo.py) on the embedded world for a few
steps with small settings, and charges the time inside each step to the callables doing the work, by
instrumenting them at the class level (benchmarks/common.Profiler: exclusive time, nested calls charged to the
innermost label, counted only inside the method's step function, after the first step):

  generate            HFModel.generate (the rollouts / samples from the current policy)
  verifier:clip       ClipScorer.sentence_rewards / token_rewards / image_embeddings / text_embeddings
  verifier:chair      ChairScorer.extract / score_caption (object mentions; online DPO's chair reward)
  verifier:glue       the rest of fisao.advantages and of the Reward objects (token spans, reward mapping)
  policy_forward      Session.logps on the policy
  reference_forward   Session.ref_logps (the frozen reference: on-policy samples cannot be cached)
  batching            PairBatcher.pairs / sequences (tokenisation, image preprocessing)
  step_other          the rest of the step function
  backward+optimizer  step wall time (step-end callback to step-end callback) minus the step function

Runs (same world, seed, batch, steps): fisao (token-level CLIP verifier), fisao_sentence (the paper's
sentence-level ablation: one CLIP score per response; the comparison for the verifier's overhead),
online_dpo (reward=chair, rule-based), online_dpo_clip (reward=clip, sentence-level CLIP).

    python benchmarks/bench_online.py                  # 9 steps x 2 prompts per run (steps 2-9 timed)
    (FiSAO's default policy_update=ppo with ppo_epochs=4 samples one rollout batch per 4 updates: its
    generation share is amortised over those updates; --steps 1+4k times whole cycles)
    python benchmarks/bench_online.py --runs fisao,online_dpo --steps 13
    python benchmarks/bench_online.py --smoke
    python benchmarks/bench_online.py --world DIR       # a world from `halbench world build --out DIR`
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import common
from common import Profiler, ratio

RUNS = ("fisao", "fisao_sentence", "online_dpo", "online_dpo_clip")
VERIFIER = ("verifier:clip", "verifier:chair", "verifier:glue")
LABELS = ("generate", *VERIFIER, "policy_forward", "reference_forward", "batching", "step_other",
          "backward+optimizer")


def instrument(prof: Profiler) -> None:
    from halbench.clip_scorer import ClipScorer
    from halbench.models.hf import HFModel
    from halbench.tasks.chair import ChairScorer
    from halbench.training import data, fisao, loop, online_dpo

    prof.patch(HFModel, "generate", "generate")
    prof.patch(fisao, "rollout", "generate")  # FiSAO samples token ids with model.generate directly
    for m in ("sentence_rewards", "token_rewards", "image_embeddings", "text_embeddings"):
        prof.patch(ClipScorer, m, "verifier:clip")
    for m in ("extract", "score_caption"):
        prof.patch(ChairScorer, m, "verifier:chair")
    prof.patch(fisao, "advantages", "verifier:glue")
    for cls in (online_dpo.ChairReward, online_dpo.ClipReward, online_dpo.ClipObjectReward):
        prof.patch(cls, "__call__", "verifier:glue")
    prof.patch(loop.Session, "ref_logps", "reference_forward")
    prof.patch(loop.Session, "logps", lambda stack: "reference_forward" if "reference_forward" in stack
               else "policy_forward")
    for m in ("pairs", "sequences"):
        prof.patch(data.PairBatcher, m, "batching")


def timed_fit(prof: Profiler, stamps: list[float]):
    """Session.fit whose step function turns the profiler on (and is itself charged as step_other)."""
    from halbench.training import loop

    original = loop.Session.fit

    def fit(self, n_items, step_fn, callbacks=()):
        inner = prof.wrap("step_other", step_fn)

        def step(session, idx):
            prof.active = True
            try:
                return inner(session, idx)
            finally:
                prof.active = False

        def stamp(step_no):
            stamps.append(time.perf_counter())
            if step_no == 1:  # step 1 is warm-up: start the books after it
                prof.totals.clear()
                prof.calls.clear()

        return original(self, n_items, step, [*callbacks, stamp])

    return original, fit


def config_for(run: str, args, out: Path):
    from halbench.training import fisao, online_dpo

    world = args.world
    common_kw = dict(output_dir=str(out), seed=0, max_steps=args.steps, per_device_batch_size=args.batch_size,
                     logging_steps=args.steps, save_steps=0, resume=False, world_images=args.world_images,
                     max_new_tokens=args.max_new_tokens, model=str(world / "vlm") if world else None)
    if run.startswith("fisao"):
        return fisao, fisao.Config(**common_kw, calibration_images=args.calibration_images, num_samples=2,
                                   reward_level="sentence" if run == "fisao_sentence" else "token",
                                   clip=str(world / "clip") if world else None)
    clip = f"clip:{world / 'clip'}" if world else "clip"
    return online_dpo, online_dpo.Config(**common_kw, num_samples=args.num_samples,
                                         reward=clip if run == "online_dpo_clip" else "chair")


def preset_calibration(out: Path) -> None:
    """Fixed FiSAO reward baselines (fisao.calibrate reads this file instead of captioning images first).
    Calibration runs before step 1 and is not in the step figures either way; the baselines only scale the
    rewards. Used with --smoke, where a barely trained VLM may name too few objects to calibrate."""
    import json

    (out / "train").mkdir(parents=True, exist_ok=True)
    base = {"token_baseline_correct": 0.3, "token_baseline_hallucinated": 0.1,
            "sentence_baseline_correct": 0.3, "sentence_baseline_hallucinated": 0.1}
    (out / "train" / "fisao_calibration.json").write_text(json.dumps({"n_captions": 0, **base}))


def run_one(run: str, args, out: Path) -> dict:
    from halbench.errors import HalbenchError
    from halbench.training import loop

    prof, stamps = Profiler(), []
    instrument(prof)
    original, fit = timed_fit(prof, stamps)
    loop.Session.fit = fit
    refused = None
    try:
        module, cfg = config_for(run, args, out)
        if args.preset_baselines and run.startswith("fisao"):
            preset_calibration(out)
        try:
            module.train(cfg)
        except HalbenchError as e:  # FiSAO refuses baselines it judges unusable: time the steps anyway
            if not run.startswith("fisao") or "calibration" not in str(e) and "verifier scores" not in str(e):
                raise
            refused = str(e)
            print(f"{run}: calibration refused ({refused[:120]}...); timing the steps with preset baselines")
            stamps.clear()
            cfg.output_dir = str(out.with_name(out.name + "_preset"))
            preset_calibration(Path(cfg.output_dir))
            module.train(cfg)
    finally:
        loop.Session.fit = original
        prof.restore()
    steps = [b - a for a, b in zip(stamps, stamps[1:])]  # steps 2..N
    if not steps:
        raise SystemExit(f"{run}: fewer than 2 steps ran; raise --steps")
    total = sum(steps)
    parts = {k: prof.totals.get(k, 0.0) for k in LABELS[:-1]}
    parts["backward+optimizer"] = max(0.0, total - sum(parts.values()))
    return {"step_s_median": statistics.median(steps), "timed_steps": len(steps), "timed_s": total,
            "calibration_refused": refused,
            "seconds": parts, "share": {k: v / total for k, v in parts.items()}, "calls": dict(prof.calls)}


def print_table(results: dict) -> None:
    names = list(results)
    print(f"\n{'share of step time':<22}" + "".join(f"{n:>17}" for n in names))
    for label in LABELS:
        print(f"{label:<22}" + "".join(f"{results[n]['share'][label]:>17.1%}" for n in names))
    print(f"{'verifier (all)':<22}" + "".join(f"{verifier_share(results[n]):>17.1%}" for n in names))
    print(f"{'s/step (median)':<22}" + "".join(f"{results[n]['step_s_median']:>17.3f}" for n in names))


def verifier_share(r: dict) -> float:
    return sum(r["share"][k] for k in VERIFIER)


def main(argv=None) -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--steps", type=int, default=9)  # 1 warm-up + 2 whole FiSAO PPO cycles (ppo_epochs 4)
    p.add_argument("--batch-size", type=int, default=2, help="Prompts (images) per step.")
    p.add_argument("--num-samples", type=int, default=4, help="Online DPO samples per prompt (FiSAO: 2).")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--world-images", type=int, default=32)
    p.add_argument("--calibration-images", type=int, default=16)
    p.add_argument("--preset-baselines", action="store_true",
                   help="Skip FiSAO's calibration pass (fixed reward baselines; on with --smoke).")
    p.add_argument("--world", type=Path, default=None,
                   help="A world built by `halbench world build --out DIR` (its vlm/ and clip/) instead of the "
                        "embedded one.")
    args = p.parse_args(argv)
    common.setup(args)
    if args.smoke:
        # 5 steps: FiSAO's default ppo_epochs=4 rolls out once per 4 updates, so steps 2..5 hold one rollout
        args.steps, args.batch_size, args.num_samples, args.max_new_tokens = 5, 1, 2, 8
        args.world_images, args.calibration_images = 8, 8
        args.runs, args.preset_baselines = "fisao,online_dpo", True
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs.split(","):
            results[run] = run_one(run, args, Path(tmp) / run)
            r = results[run]
            print(f"{run}: {r['step_s_median']:.3f} s/step; generate {r['share']['generate']:.0%}, verifier "
                  f"{verifier_share(r):.0%} of step time", flush=True)
    print_table(results)
    parts = []
    for run, r in results.items():
        parts.append(f"{run} gen {r['share']['generate']:.0%} / verifier {verifier_share(r):.0%}")
    if "fisao" in results and "fisao_sentence" in results:
        over = ratio(results["fisao"]["step_s_median"], results["fisao_sentence"]["step_s_median"])
        parts.append(f"token-level verifier step x{over:.2f} of sentence-level")
    common.summary("bench_online", "share of step time: " + "; ".join(parts), {"runs": results}, args)


if __name__ == "__main__":
    main()
