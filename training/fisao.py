"""FiSAO: Fine-Grained Self-Alignment Optimization with the vision encoder as a token-level verifier.

Card
- Source: Cui, Zhang, Zhou, Chen, Deng, Yao, Chua, "Fine-Grained Verifiers: Preference Modeling as Next-token
  Prediction in Vision-Language Alignment", arXiv 2410.14148 (ICLR 2025); notes in ../shared/PAPERS.md.
  Known from the paper: self-alignment without external data, the VLM's own vision encoder as a token-level
  verifier, rewards only on object tokens (object set C expanded from COCO + Detic), baselines from the
  scores of correct vs hallucinated tokens on captions of 5,000 COCO-train images labelled by CHAIR, an MDP
  over next tokens optimised by RL on the token rewards with a KL term, training prompts = the first 8k
  items of LLaVA-Instruct-150k. UNKNOWN: the exact Eq. 7/8 (score and normaliser), the optimiser (PPO
  epochs, critic, clip, KL coefficient) and every training hyperparameter; no code is public
  (github.com/gzcch/FISAO_ICLR holds only a README). Everything below beyond those facts is a
  RECONSTRUCTION, each a switch:
  1. Verifier: a CLIP (image tower + text tower). The paper uses the VLM's own vision encoder; a LLaVA tower
     has no text tower, so `clip` names a CLIPModel dir (default: the world's CLIP, whose image tower IS the
     world VLM's vision tower). Score of an object = cosine(image, phrase_template % mention) (ClipScorer).
  2. Objects: mentions found by the CHAIR pipeline (halbench.tasks.chair.ChairScorer); other tokens get
     reward 0. The reward of a mention goes to every token of the mention.
  3. Baselines: before training, the starting policy captions `calibration_images` training images (same
     sampling as rollouts); CHAIR labels its mentions against the ground truth; b_c / b_h = mean verifier
     score of correct / hallucinated mentions. Ground truth is used ONLY here; rollout rewards use the
     verifier alone. Saved to OUTPUT/train/fisao_calibration.json (reused on resume).
  4. Reward: losses.fisao_normalize_reward: "threshold" (+1 at or above b_c, -1 at or below b_h, 0 between;
     default) or "linear" (b_h -> -1, b_c -> +1, clipped). A repeated mention of a class in one response
     keeps a negative reward but gets no positive one (`repeated_mentions`): with per-mention rewards, the
     first world runs learned "a person person person ..." (CHAIRi fell, captions degenerated).
  5. Optimisation: on-policy rollouts (num_samples per image, temperature sampling) from the current policy,
     scored on the SAMPLED token ids (training/fisao_data.py; no decode/re-encode), token-level PPO-clip with
     the per-token reward as advantage (no critic; `gamma` > 0 turns it into the discounted reward-to-go) and
     a k3 KL penalty to the reference (losses.fisao_policy_loss). policy_update="ppo" (default): each rollout
     batch serves `ppo_epochs` consecutive optimizer steps with its old log-probs fixed, so the ratio moves
     and the clip acts (the shared loop advances its data order every step, so with E epochs only every E-th
     micro-batch of images is rolled out: max_steps = E x the rollout batches wanted; after a resume the
     interrupted rollout batch is sampled afresh). policy_update="reinforce": one update per rollout batch,
     ratio 1, i.e. the per-token policy gradient -A_t log pi(y_t) (the pre-issue-13 behaviour).
  6. Ablation `reward_level="sentence"`: the CLIP score of the whole response, normalised the same way with
     baselines = mean score of calibration captions without / with a hallucination, given to every response
     token (the sentence-level reward the paper compares against). When the calibration finds a verifier
     that scores hallucinated captions higher (it does on the embedded world), training refuses unless
     check_verifier=false, which then keeps the verifier's own direction.
  7. Defaults (learning_rate, batch, max_steps, temperature, kl_beta, reward_mapping) were chosen on a
     freshly generated world dev split, never on the shipped validation split (training/FISAO_RESULTS.md),
     with the REINFORCE update; ppo_epochs = 4 (TRL's PPO default) is untuned.
  8. Prompts: the CHAIR captioning prompt on every image by default; `prompts` = a LLaVA-Instruct-style file
     (the paper: the first 8k items of LLaVA-Instruct-150k, `prompts_limit`), calibration still captions
     `calibration_images` images that have ground truth (the paper: 5,000 COCO-train captions).
  9. Object set C = `synonyms`: the COCO list (CHAIR's synonyms) by default, or an expanded list file in the
     same format ("class, synonym, ..." per line; the paper expands C with the Detic vocabulary).
- Loop: training/loop.py (accelerate, checkpoints, resume, metrics.jsonl, status.json). Logged per step:
  loss, pg_loss, kl, clip_frac, reward/mean (per object; per response at sentence level), reward/mean_token,
  rollout/{n_objects, hallucinated_frac, mean_tokens} (hallucinated_frac uses ground truth, for monitoring only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from halbench.errors import DataError, HalbenchError
from halbench.runs import atomic_write_json
from halbench.schema import GenerationSettings, Request
from halbench.training.base import TrainConfig, TrainingMethod, hp
from halbench.training.losses import discounted_returns, fisao_normalize_reward, fisao_policy_loss
from halbench.training.fisao_data import load_instruct_prompts, rollout
from halbench.training.loop import Session, run_training

PAPER = ("Cui et al. 2024, Fine-Grained Verifiers: Preference Modeling as Next-token Prediction in "
         "Vision-Language Alignment (FiSAO), arXiv 2410.14148, ICLR 2025")
NA = "not specified (unknown: paper details not public)"
PROMPT = "Please describe this image in detail."  # = halbench.tasks.chair.PROMPT: train on what CHAIR asks


@dataclass
class Config(TrainConfig):
    # shared-loop fields whose FiSAO defaults differ (chosen on a held-out world dev split, see FISAO_RESULTS.md)
    learning_rate: float = hp(1e-4, "AdamW peak learning rate.", NA)
    per_device_batch_size: int = hp(8, "Images per process per micro-batch (each gets num_samples rollouts).", NA)
    max_steps: int | None = hp(100, "Optimizer steps (None: num_epochs passes over the images).", NA)
    images: str | None = hp(None, "Training images folder (files named by image id, COCO style). Default: a "
                            "generated world training split (world_images images).", "COCO train images (self-"
                            "alignment on the model's own captions; no preference data)")
    gt: str | None = hp(None, "Ground-truth object sets of the training images (anything chair.load_gt reads); "
                        "used only to calibrate the baselines. Default: the world split's gt_objects.json.", NA)
    world_images: int = hp(400, "With no `images`: images in the generated world training split.")
    clip: str | None = hp(None, "Verifier: a CLIPModel dir (default: the embedded world's CLIP).",
                          "the VLM's own vision encoder (CLIP ViT-L/14-336 for LLaVA-1.5)")
    phrase_template: str = hp("a photo of a {}.", "Text the verifier scores for an object mention.", NA)
    reward_level: str = hp("token", "'token' (FiSAO) or 'sentence' (whole-response CLIP reward on every token: "
                           "the paper's comparison).", "token (sentence-level is the paper's ablation)")
    reward_mapping: str = hp("threshold", "Score -> reward: 'threshold' (+1 above the correct baseline, -1 below "
                             "the hallucinated one, 0 between) or 'linear' between the baselines.", NA)
    calibration_images: int = hp(96, "Training images captioned by the starting policy to measure the baselines.",
                                 "5,000 random COCO-train images")
    prompt: str = hp(PROMPT, "Captioning prompt for calibration, and for rollouts when `prompts` is not set.",
                     "captions for calibration (prompt wording not given); rollouts on LLaVA-Instruct prompts")
    num_samples: int = hp(2, "Rollouts sampled per image per step.", NA)
    max_new_tokens: int = hp(64, "Rollout length limit.", NA)
    temperature: float = hp(0.7, "Rollout sampling temperature.", NA)
    repeated_mentions: str = hp("no_bonus", "Reward of a repeated mention of a class in one response: "
                                "'no_bonus' (negative rewards kept, positive ones zeroed) or 'keep'.", NA)
    gamma: float = hp(0.0, "Discount of the reward-to-go advantage: 0 = each token keeps its own reward, 1 = every "
                      "token gets the sum of the rewards after it (PPO's Monte-Carlo return without a critic).", NA)
    kl_beta: float = hp(0.1, "Weight of the per-token KL(pi || ref) penalty.", NA)
    clip_eps: float = hp(0.2, "PPO clip range epsilon.", "not specified (0.2 = the PPO paper default)")
    synonyms: str = hp("coco2018", "Object set C: a CHAIR synonym list name or file ('class, synonym, ...' per "
                       "line) whose classes get rewards; an expanded list file widens C.",
                       "COCO objects expanded with the Detic vocabulary (list not published)")
    prompts: str | None = hp(None, "Training prompts: a LLaVA-Instruct-style JSON (llava_instruct_150k.json "
                             "format; images under `images`). Default: the captioning `prompt` on every image.",
                             "LLaVA-Instruct-150k")
    prompts_limit: int | None = hp(8000, "Use the first N items of `prompts` (None: all).", "first 8k items")
    policy_update: str = hp("ppo", "'ppo' (ppo_epochs updates per rollout batch, old log-probs fixed, clipped "
                            "ratio) or 'reinforce' (one update per rollout batch: per-token policy gradient).",
                            "an RL algorithm on token rewards with a KL term (PPO-style; details not given)")
    ppo_epochs: int = hp(4, "Optimizer steps per rollout batch with policy_update=ppo.", "not specified")
    pipeline: str = hp("opera", "CHAIR lemmatizer pipeline.", NA)
    verifier_device: str = hp("cpu", "Device of the CLIP verifier.")
    check_verifier: bool = hp(True, "Refuse to train when the calibration baselines are inverted (the verifier "
                              "scores hallucinations higher, so its reward would teach them); false runs anyway.")

    def check(self) -> None:
        super().check()
        if self.reward_level not in ("token", "sentence"):
            raise HalbenchError(f"reward_level must be 'token' or 'sentence', got {self.reward_level!r}")
        if self.repeated_mentions not in ("no_bonus", "keep"):
            raise HalbenchError(f"repeated_mentions must be 'no_bonus' or 'keep', got {self.repeated_mentions!r}")
        if self.reward_mapping not in ("linear", "threshold"):
            raise HalbenchError(f"reward_mapping must be 'linear' or 'threshold', got {self.reward_mapping!r}")
        if self.num_samples < 1 or self.calibration_images < 2:
            raise HalbenchError("num_samples must be >= 1 and calibration_images >= 2")
        if self.policy_update not in ("ppo", "reinforce") or self.ppo_epochs < 1:
            raise HalbenchError(f"policy_update must be 'ppo' or 'reinforce' and ppo_epochs >= 1, got "
                                f"{self.policy_update!r}, {self.ppo_epochs}")
        if self.prompts and not self.images:
            raise HalbenchError("prompts (a LLaVA-Instruct file) need `images` (the folder its image names are in)")
        if self.kl_beta < 0 or not 0 < self.clip_eps < 1 or not 0 <= self.gamma <= 1:
            raise HalbenchError("kl_beta must be >= 0, 0 < clip_eps < 1 and 0 <= gamma <= 1")


# -- token alignment -----------------------------------------------------------------------------------------
def token_char_spans(tokenizer: Any, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """(decoded text, [start, end) of each token in it), by decoding growing prefixes. Special tokens decode to
    nothing (empty span). A prefix that is not a prefix of the next decode (a multi-byte character split across
    tokens) gets its span closed at the next consistent position."""
    spans, prev, text = [], 0, ""
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        spans.append((prev, len(text)))
        prev = len(text)
    return text, spans


def mention_token_mask(spans: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose character span overlaps [start, end)."""
    return [j for j, (a, b) in enumerate(spans) if a < end and b > start and b > a]


# -- rewards ---------------------------------------------------------------------------------------------------
class Verifier:
    """CLIP scores of rollouts: per mention (token level) or per response (sentence level), + CHAIR labels."""

    def __init__(self, cfg: Config):
        from halbench.clip_scorer import ClipScorer
        from halbench.tasks.chair import ChairScorer

        self.clip = ClipScorer(cfg.clip, device=cfg.verifier_device, phrase_template=cfg.phrase_template)
        self.chair = ChairScorer(cfg.synonyms, cfg.pipeline)

    def mentions(self, text: str) -> list[Any]:
        return [m for m in self.chair.extract(text) if m.start is not None]

    def object_scores(self, image: str, text: str) -> list[tuple[Any, float]]:
        ms = self.mentions(text)
        return list(zip(ms, self.clip.token_rewards(image, [m.word for m in ms])))

    def sentence_score(self, image: str, text: str) -> float:
        return self.clip.sentence_rewards([image], [text.strip() or "."])[0]


def calibrate(session: Session, verifier: Verifier, items: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """Baseline verifier scores of correct / hallucinated objects (and captions) on the policy's own captions."""
    from halbench.tasks.reward_analysis import auroc
    path = session.train_dir / "fisao_calibration.json"
    if path.is_file():  # resume: the same baselines as the interrupted run
        return json.loads(path.read_text())
    session.accelerator.print(f"FiSAO: captioning {len(items)} calibration images to set the verifier baselines")
    shown, session.hf.progress = session.hf.progress, session.accelerator.is_main_process  # a bar per batch
    items = [{**it, "prompt": cfg.prompt} for it in items]  # calibration captions (CHAIR prompt)
    texts = sample_texts(session, items, cfg, tag="calib", n=1)
    session.hf.progress = shown
    obj = {"correct": [], "hallucinated": []}
    cap = {"correct": [], "hallucinated": []}
    for item, text in zip(items, texts):
        gt = set(item["gt_objects"])
        scored = verifier.object_scores(item["image"], text)
        for m, s in scored:
            obj["hallucinated" if m.cls not in gt else "correct"].append(s)
        bad = any(m.cls not in gt for m, _ in scored)
        cap["hallucinated" if bad else "correct"].append(verifier.sentence_score(item["image"], text))
    result = {"verifier": str(verifier.clip.clip_dir), "verifier_fingerprint": verifier.clip.fingerprint(),
              "n_captions": len(texts), **{f"n_{k}_objects": len(v) for k, v in obj.items()}}
    for level, d in (("token", obj), ("sentence", cap)):
        for k, v in d.items():
            result[f"{level}_baseline_{k}"] = sum(v) / len(v) if v else None
        # how well this verifier separates the two groups at this level (diagnostic; 0.5 = chance)
        auc = auroc([-x for x in d["hallucinated"] + d["correct"]], [True] * len(d["hallucinated"]) +
                    [False] * len(d["correct"]))
        result[f"{level}_auroc"] = None if auc != auc else auc
    if cfg.check_verifier:
        check_baselines(result, cfg.reward_level)
    if (result[f"{cfg.reward_level}_auroc"] or 0) < 0.6:
        session.accelerator.print(f"WARNING: the verifier barely separates correct from hallucinated "
                                  f"{cfg.reward_level}s on the calibration captions (AUROC "
                                  f"{result[f'{cfg.reward_level}_auroc']}); rewards will be mostly noise")
    if session.accelerator.is_main_process:
        atomic_write_json(path, result)
    session.accelerator.print(f"FiSAO baselines: {json.dumps(result)}")
    return result


def check_baselines(cal: dict[str, Any], level: str) -> None:
    c, h = cal.get(f"{level}_baseline_correct"), cal.get(f"{level}_baseline_hallucinated")
    if c is None or h is None:
        raise HalbenchError(f"FiSAO calibration found no {'correct' if c is None else 'hallucinated'} "
                            f"{'objects' if level == 'token' else 'captions'} in {cal['n_captions']} captions; "
                            "raise calibration_images")
    if c <= h:
        raise HalbenchError(f"the verifier scores hallucinated {level}s ({h:.4f}) at least as high as correct ones "
                            f"({c:.4f}): its rewards would teach hallucination (check `clip` / phrase_template)")


# -- rollouts --------------------------------------------------------------------------------------------------
def _requests(items: list[dict[str, Any]], cfg: Config, tag: str, n: int, do_sample: bool = True) -> list[Request]:
    g = GenerationSettings(max_new_tokens=cfg.max_new_tokens, do_sample=do_sample, temperature=cfg.temperature)
    return [Request(id=f"{it['id']}:{tag}:{k}", prompt=it.get("prompt") or cfg.prompt, image=it["image"],
                    generation=g) for it in items for k in range(n)]


@torch.no_grad()
def sample_texts(session: Session, items: list[dict[str, Any]], cfg: Config, tag: str, n: int) -> list[str]:
    """Sampled captions from the current policy (request ids carry `tag`, so every step draws fresh samples)."""
    was_training = session.policy.training
    session.policy.eval()
    responses = session.hf.generate(_requests(items, cfg, tag, n))
    session.policy.train(was_training)
    failed = [r.error for r in responses if r.error]
    if failed:
        raise HalbenchError(f"{len(failed)} rollouts failed to generate (first: {failed[0]})")
    return [r.text for r in responses]


def advantages(session: Session, verifier: Verifier, batch: dict[str, Any], items: list[dict[str, Any]],
               cfg: Config, cal: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token rewards [B, T-1] in the `token_logps` layout (index c-1 scores the token in column c)."""
    ids, labels = batch["input_ids"], batch["labels"]
    adv = torch.zeros(ids.shape[0], ids.shape[1] - 1)
    b_c, b_h = cal[f"{cfg.reward_level}_baseline_correct"], cal[f"{cfg.reward_level}_baseline_hallucinated"]
    stats = {"n_objects": 0.0, "n_labelled": 0.0, "n_hallucinated": 0.0, "reward_sum": 0.0, "n_tokens": 0.0}
    for r, item in enumerate(items):
        cols = (labels[r] != -100).nonzero().flatten().tolist()
        text, spans = token_char_spans(session.hf.tokenizer, ids[r, cols].tolist())
        mentions = verifier.mentions(text)
        gt = item.get("gt_objects")  # monitoring only: the rewards below never see the ground truth
        if gt is not None:
            stats["n_labelled"] += len(mentions)
            stats["n_hallucinated"] += sum(m.cls not in set(gt) for m in mentions)
        stats["n_objects"] += len(mentions)
        stats["n_tokens"] += len(cols)
        if cfg.reward_level == "sentence":
            score = torch.tensor([verifier.sentence_score(item["image"], text)])
            rew = float(fisao_normalize_reward(score, b_c, b_h, cfg.reward_mapping, cfg.check_verifier))
            adv[r, [c - 1 for c in cols]] = rew
            stats["reward_sum"] += rew
        elif mentions:
            scores = torch.tensor(verifier.clip.token_rewards(item["image"], [m.word for m in mentions]))
            rewards = fisao_normalize_reward(scores, b_c, b_h, cfg.reward_mapping, cfg.check_verifier).tolist()
            for m, rew in zip(mentions, repeat_policy(mentions, rewards, cfg.repeated_mentions)):
                for j in mention_token_mask(spans, m.start, m.end):
                    adv[r, cols[j] - 1] = rew
                stats["reward_sum"] += rew
    return adv.to(ids.device), stats


def repeat_policy(mentions: list[Any], rewards: list[float], mode: str) -> list[float]:
    """Rewards of repeated mentions of a class within one response. 'no_bonus': a repeat keeps a negative
    reward but never a positive one (otherwise "a person person person ..." collects reward per repeat: the
    reward hacking we observed on the world); 'keep': every mention is rewarded as scored."""
    if mode == "keep":
        return rewards
    seen: set[str] = set()
    out = []
    for m, r in zip(mentions, rewards):
        out.append(min(r, 0.0) if m.cls in seen else r)
        seen.add(m.cls)
    return out


def rollout_batch(session: Session, items: list[dict[str, Any]], cfg: Config, tag: str,
                  n: int) -> tuple[list[str], dict[str, Any]]:
    """n rollouts per item from the current policy: texts + the training batch of their sampled ids."""
    was_training = session.policy.training
    session.policy.eval()
    texts, batch = rollout(session.hf, _requests(items, cfg, tag, n), cfg.max_length)
    session.policy.train(was_training)
    return texts, batch


def make_step(cfg: Config, verifier: Verifier, items: list[dict[str, Any]], cal: dict[str, Any]):
    """The shared loop's step function: rollouts -> verifier rewards -> PPO-clip + KL loss on them.
    With policy_update=ppo a rollout batch (its ids, advantages, old and reference log-probs) is kept for
    ppo_epochs optimizer steps; the old log-probs stay those of the policy that sampled it."""
    epochs = cfg.ppo_epochs if cfg.policy_update == "ppo" else 1
    cache: dict[int, tuple[int, Any]] = {}  # micro-batch slot -> (rollout id, rollout)
    calls = [0]

    def new_rollout(session: Session, idx: list[int]):
        its = [items[i] for i in idx for _ in range(cfg.num_samples)]
        _, batch = rollout_batch(session, [items[i] for i in idx], cfg, tag=f"step{session.global_step}",
                                 n=cfg.num_samples)
        rewards, st = advantages(session, verifier, batch, its, cfg, cal)
        with torch.no_grad():
            old, mask = session.logps(session.model, batch)
            ref, _ = session.ref_logps(batch)
        adv = discounted_returns(rewards.to(old), mask, cfg.gamma)
        return {"batch": batch, "rewards": rewards, "adv": adv, "old": old, "ref": ref.to(old), "st": st,
                "n": len(its)}

    def step(session: Session, idx: list[int]):
        slot = calls[0] % cfg.gradient_accumulation_steps
        calls[0] += 1
        rid = session.global_step // epochs
        if slot not in cache or cache[slot][0] != rid:
            cache[slot] = (rid, new_rollout(session, idx))
        ro = cache[slot][1]
        logps, mask = session.logps(session.model, ro["batch"])
        old = logps.detach() if cfg.policy_update == "reinforce" else ro["old"]
        loss, stats = fisao_policy_loss(logps, old, ro["ref"], ro["adv"], mask, cfg.clip_eps, cfg.kl_beta)
        st, n = ro["st"], ro["n"]
        n_units = st["n_objects"] if cfg.reward_level == "token" else n
        metrics = {**stats, "reward/mean": st["reward_sum"] / max(1.0, n_units),
                   "reward/mean_token": float((ro["rewards"].to(logps) * mask).sum() / mask.sum().clamp(min=1)),
                   "rollout/n_objects": st["n_objects"] / n,
                   "rollout/hallucinated_frac": st["n_hallucinated"] / st["n_labelled"] if st["n_labelled"]
                   else None, "rollout/mean_tokens": st["n_tokens"] / n,
                   "ppo/ratio_mean": float(((logps.detach() - old).exp() * mask).sum() / mask.sum().clamp(min=1))}
        return loss, metrics

    return step


# -- data ------------------------------------------------------------------------------------------------------
def load_items(cfg: Config, session: Session) -> list[dict[str, Any]]:
    """[{id, image, gt_objects[, prompt]}] of the training items (a generated world split when `images` is None;
    LLaVA-Instruct prompts when `prompts` is set, gt_objects None for images without ground truth)."""
    from halbench.tasks.chair import image_id_of, load_gt

    images, gt_source = cfg.images, cfg.gt
    if images is None:
        images, gt_source = world_train_split(session, cfg.world_images, cfg.seed)
    elif gt_source is None:
        raise DataError("FiSAO needs `gt` (ground-truth objects of the training images) to calibrate its "
                        "baselines", path=images)
    gt = load_gt(gt_source, pipeline=cfg.pipeline, synonyms=cfg.synonyms)
    if cfg.prompts:  # LLaVA-Instruct prompts; gt (where known) labels calibration captions and monitoring
        items = load_instruct_prompts(cfg.prompts, images, cfg.prompts_limit)
        for it in items:
            key = image_id_of(it.pop("file"))
            it["gt_objects"] = sorted(gt[key]) if key in gt else None
        if sum(it["gt_objects"] is not None for it in items) < 2:
            raise DataError("fewer than 2 prompt images have ground truth in `gt` (needed for calibration)",
                            path=cfg.prompts)
        return items
    files = {image_id_of(f.name): f for f in sorted(Path(images).iterdir()) if f.is_file()}
    items = [{"id": str(i), "image": str(files[i]), "gt_objects": sorted(gt[i])} for i in sorted(gt, key=str)
             if i in files]
    if len(items) < 2:
        raise DataError(f"only {len(items)} training images have ground truth (need >= 2)", path=images)
    return items


def world_train_split(session: Session, n_images: int, seed: int) -> tuple[Path, Path]:
    """Render a fresh world split "fisao" (images + gt_objects.json) once under OUTPUT/train/world_train."""
    from halbench.world.generate import generate_split, write_coco

    out = session.train_dir / "world_train"
    done = out / "gt_objects.json"
    if session.accelerator.is_main_process and not done.is_file():
        write_coco(generate_split("fisao", n_images, seed, progress=False), out, progress=False)
    session.accelerator.wait_for_everyone()
    return out / "images", done


def train(cfg: Config, callbacks=()) -> Path:
    """FiSAO; returns OUTPUT/train/final (a standard HF checkpoint dir)."""

    def body(session: Session) -> Path:
        items = load_items(cfg, session)
        verifier = Verifier(cfg)
        labelled = [it for it in items if it.get("gt_objects") is not None]
        cal = calibrate(session, verifier, labelled[:cfg.calibration_images], cfg)
        return session.fit(len(items), make_step(cfg, verifier, items, cal), callbacks)

    return run_training(cfg, "fisao", body)


METHOD = TrainingMethod(
    name="fisao", Config=Config, train=train, paper=PAPER,
    description="Token-level CLIP-verifier rewards on object mentions, calibrated on the model's own captions, "
                "optimised on-policy with PPO-clip + KL (sentence-level ablation: reward_level=sentence).",
)
