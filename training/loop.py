"""The one training loop every method shares, on `accelerate`.

A method supplies `step_fn(session, indices) -> (loss, metrics)` for one micro-batch of item indices; the loop
owns everything else:

- distribution: `accelerate launch` decides (DDP / FSDP / DeepSpeed come from accelerate configs, never from
  this code). Each process sees per_device_batch_size items per micro-batch (accelerate shards the batches of
  one seeded order), so a global batch is the same items whatever the process count.
- optimisation: AdamW on trainable parameters (vision tower frozen by default; LoRA via peft as an option),
  linear warm-up + decay stepped once per optimizer step (not prepared by accelerate, which would step it once
  per process), gradient accumulation through `accelerator.accumulate`, clipping.
- logging: OUTPUT/train/metrics.jsonl, one line per `logging_steps` optimizer steps, metrics averaged over the
  micro-batches and processes of the step.
- checkpoints: OUTPUT/train/checkpoints/checkpoint-N/ = a standard HF dir (save_pretrained + processor; a peft
  adapter dir with LoRA) + training_state/ (accelerate save_state: weights, optimizer, RNG; the scheduler as
  scheduler.json; nothing is ever unpickled on resume, see training/safe_state.py) + trainer_state.json. Written to a temp dir and renamed, so a crash never leaves a half checkpoint.
- resume: a rerun with the same config loads the last checkpoint and skips the micro-batches already seen
  (the data order is a pure function of seed and epoch), truncating metrics.jsonl to that step. On CPU the
  resumed run ends with the same weights as an uninterrupted one (tests/test_training_loop.py).
- result: OUTPUT/train/final/ (LoRA merged), OUTPUT/train/status.json {"status", "error", "checkpoint", ...}.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from halbench.errors import HalbenchError
from halbench.runs import RecordWriter, atomic_write_json, read_records
from halbench.training.base import TrainConfig, config_to_dict
from halbench.training.data import PairBatcher
from halbench.training.losses import token_logps
from halbench.training.progress import TrainProgress
from halbench.training.safe_state import load_scheduler, load_state, save_scheduler

StepFn = Callable[["Session", list[int]], tuple[torch.Tensor, dict[str, Any]]]
#: config fields that do not change the trajectory (may differ when resuming)
BOOKKEEPING = {"resume", "logging_steps", "save_steps", "save_total_limit", "ref_cache_dir", "output_dir"}


def resolve_model(spec: str | None) -> Path:
    """None -> the embedded world's VLM; 'hf:DIR' or DIR -> DIR, where a LoRA adapter dir is merged onto its base
    and an original-LLaVA dir converted (once, into the user cache), exactly as `halbench eval --model` does."""
    if spec is None:
        from halbench.world import default_world

        return Path(default_world().vlm_dir)
    from halbench.models.lora import prepare_checkpoint

    return prepare_checkpoint(Path(spec[3:] if spec.startswith("hf:") else spec).expanduser())


def use_cpu_backend() -> bool:
    """True for a multi-process launch on a machine without an accelerator: accelerate then needs cpu=True
    to set up gloo (MULTI_CPU); without it each process silently trains alone on its own shard."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world > 1 and not torch.cuda.is_available()


def write_status(train_dir: Path, status: str, error: str | None = None, **extra: Any) -> None:
    atomic_write_json(train_dir / "status.json", {"status": status, "error": error, **extra})


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of range(n) that depends only on (seed, epoch): resumable and process-count invariant."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class Session:
    """The policy and everything a method's step function needs (see module docstring)."""

    def __init__(self, cfg: TrainConfig, method: str):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from halbench.models.hf import HFModel

        cfg.check()
        self.cfg, self.method = cfg, method
        self.train_dir = Path(cfg.output_dir) / "train"
        self.accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                                       step_scheduler_with_optimizer=False, cpu=use_cpu_backend())
        set_seed(cfg.seed)
        self.model_path = resolve_model(cfg.model)
        self.hf = HFModel(self.model_path, device=str(self.accelerator.device), seed=cfg.seed)
        self._set_trainable()
        self.policy = self.hf.model  # unwrapped (generation, saving); self.model is the prepared wrapper
        self.model = self.policy
        self.batcher = PairBatcher(self.hf, cfg.max_length)
        self._ref_model = None
        self.global_step = 0

    # -- model ----------------------------------------------------------------------------------------
    def _set_trainable(self) -> None:
        cfg, model = self.cfg, self.hf.model
        for name, p in model.named_parameters():
            if cfg.freeze_vision_tower and re.search(r"(^|\.)(vision_tower|visual|vision_model)\.", name):
                p.requires_grad_(False)
        if cfg.lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(cfg.seed)
            # a separate projector LR trains the projector in full beside the adapters (LLaVA's LoRA recipe)
            lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=cfg.lora_target_modules, bias="none",
                              modules_to_save=["multi_modal_projector"] if cfg.projector_learning_rate else None)
            self.hf.model = get_peft_model(model, lcfg)
        if not any(p.requires_grad for p in self.hf.model.parameters()):
            raise HalbenchError("no trainable parameters (check freeze_vision_tower / lora_target_modules)")

    def logps(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token response log-probs [B, T-1] and mask from one forward of `model` on `inputs`."""
        kw = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**kw, use_cache=False).logits
        return token_logps(logits, inputs["labels"])

    @torch.no_grad()
    def ref_logps(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference log-probs: the LoRA base (adapters disabled) or a frozen copy of the starting weights."""
        if self.cfg.lora and not self.cfg.ref_model:
            with self.policy.disable_adapter():
                return self.logps(self.policy, inputs)
        if self._ref_model is None:
            from halbench.models.hf import HFModel

            ref = self.ref_model_path
            self._ref_model = HFModel(ref, device=str(self.accelerator.device)).model.eval()
            self._ref_model.requires_grad_(False)
        return self.logps(self._ref_model, inputs)

    @property
    def ref_model_path(self) -> Path:
        """The reference checkpoint: `ref_model` when set, else the starting policy."""
        return resolve_model(self.cfg.ref_model) if self.cfg.ref_model else self.model_path

    def initial_logps_context(self):
        """Context in which the policy computes reference values before training (eval, adapters off)."""
        return self.policy.disable_adapter() if self.cfg.lora else nullcontext()

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self, n_items: int, step_fn: StepFn, callbacks: Iterable[Callable[[int], None]] = ()) -> Path:
        """Train over items 0..n_items-1 (step_fn gets each micro-batch's indices); returns OUTPUT/train/final."""
        cfg, acc = self.cfg, self.accelerator
        loader, optimizer, scheduler, params, steps_per_epoch, total = self._prepare(n_items)
        self.global_step = self._resume(scheduler)
        log = _MetricLog(self.train_dir / "metrics.jsonl", acc, self.global_step)
        progress = TrainProgress(total, self.global_step, acc.is_main_process, self.method)
        start, epoch, ga = time.time(), self.global_step // steps_per_epoch, cfg.gradient_accumulation_steps
        while self.global_step < total:
            skip = (self.global_step - epoch * steps_per_epoch) * ga
            batches = acc.skip_first_batches(loader, skip) if skip else loader
            # accelerate's loaders call sampler.set_epoch(their own counter) on iteration; a loader made
            # by skip_first_batches starts that counter at 0, so set the epoch on the loader we iterate
            batches.set_epoch(epoch)
            for idx in batches:
                with acc.accumulate(self.model):
                    loss, metrics = step_fn(self, idx.tolist())
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                log.add({"loss": loss.detach(), **metrics})
                progress.add({"loss": loss.detach(), **metrics})
                if acc.sync_gradients:
                    scheduler.step()
                    self.global_step += 1
                    progress.step()
                    self._after_step(log, total, epoch=self.global_step / steps_per_epoch,
                                     lr=scheduler.get_last_lr()[0], elapsed_s=round(time.time() - start, 2))
                    for cb in callbacks:
                        cb(self.global_step)
                    if self.global_step >= total:
                        break
            epoch += 1
        log.close()
        progress.close()
        return self._save_final()

    def _prepare(self, n_items: int):
        """Loader over item indices (seeded order), AdamW, linear schedule; model/optimizer/loader prepared."""
        cfg, acc = self.cfg, self.accelerator
        loader = torch.utils.data.DataLoader(range(n_items), batch_size=cfg.per_device_batch_size,
                                             sampler=EpochSampler(n_items, cfg.seed), collate_fn=torch.tensor)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(_param_groups(self.policy, cfg), lr=cfg.learning_rate,
                                      weight_decay=cfg.weight_decay)
        self.policy.train()
        self.model, optimizer, loader = acc.prepare(self.policy, optimizer, loader)
        steps_per_epoch = max(1, math.ceil(len(loader) / cfg.gradient_accumulation_steps))
        total = cfg.max_steps or cfg.num_epochs * steps_per_epoch
        scheduler = _linear_schedule(optimizer, total, cfg.warmup_ratio)
        self._scheduler = scheduler  # saved as JSON (never registered: accelerate would pickle it)
        return loader, optimizer, scheduler, params, steps_per_epoch, total

    def _after_step(self, log: "_MetricLog", total: int, **extra: Any) -> None:
        step, cfg = self.global_step, self.cfg
        if step % cfg.logging_steps == 0 or step == total:
            log.flush(step, **extra)
        if cfg.save_steps and step % cfg.save_steps == 0 and step < total:
            self._save_checkpoint()

    # -- checkpoints ----------------------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.train_dir / "checkpoints"

    def _save_hf(self, out: Path, merge_lora: bool = False) -> None:
        acc = self.accelerator
        state = acc.get_state_dict(self.model)  # every rank must call this (FSDP/DeepSpeed gather)
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            if merge_lora and self.cfg.lora:
                model = model.merge_and_unload()
                state = None
            model.save_pretrained(out, state_dict=state, safe_serialization=True)
            self.hf.save_processor(out)  # the family adapter writes a public processor class

    def _save_checkpoint(self) -> None:
        acc, step = self.accelerator, self.global_step
        tmp = self.checkpoints_dir / f".tmp-checkpoint-{step}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "training_state"))
        self._save_hf(tmp)
        if acc.is_main_process:
            save_scheduler(self._scheduler, tmp / "training_state")
            atomic_write_json(tmp / "trainer_state.json", {"global_step": step, "method": self.method})
            final = self.checkpoints_dir / f"checkpoint-{step}"
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in _checkpoints(self.checkpoints_dir)[:-max(1, self.cfg.save_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _resume(self, scheduler: Any) -> int:
        ckpts = _checkpoints(self.checkpoints_dir) if self.cfg.resume else []
        if not ckpts:
            return 0
        last = ckpts[-1]
        step = json.loads((last / "trainer_state.json").read_text())["global_step"]
        load_state(self.accelerator, last / "training_state")
        load_scheduler(scheduler, last / "training_state", int(step))
        self.accelerator.print(f"resumed from {last} (step {step})")
        return int(step)

    def _save_final(self) -> Path:
        out, tmp = self.train_dir / "final", self.train_dir / ".tmp-final"
        acc = self.accelerator
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        self._save_hf(tmp, merge_lora=True)
        if acc.is_main_process:
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        acc.wait_for_everyone()
        return out


def _param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: the projector at projector_learning_rate when set (BDHS study: a separate projector LR)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.projector_learning_rate is None:
        return [{"params": [p for _, p in named]}]
    proj = [p for n, p in named if re.search(r"(multi_modal_projector|mm_projector)", n)]
    if not proj:
        raise HalbenchError("projector_learning_rate is set but no trainable projector parameters were found "
                            "(names containing multi_modal_projector / mm_projector)")
    rest = [p for n, p in named if not re.search(r"(multi_modal_projector|mm_projector)", n)]
    return [{"params": rest}, {"params": proj, "lr": cfg.projector_learning_rate}]


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _linear_schedule(optimizer: Any, total: int, warmup_ratio: float):
    warmup = int(total * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _MetricLog:
    """Averages micro-batch metrics over one optimizer step and all processes; appends to metrics.jsonl.
    A metric may be None in a micro-batch (e.g. no online pair): it is averaged over the others. Step
    functions must return the same keys on every call (processes reduce the same vector)."""

    def __init__(self, path: Path, accelerator: Any, resumed_step: int):
        self.acc, self.sums, self.counts = accelerator, {}, {}
        self.writer = None
        if accelerator.is_main_process:
            kept = [r for r in read_records(path, repair=True) if r.get("step", 0) <= resumed_step]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
            self.writer = RecordWriter(path)

    def add(self, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            self.sums.setdefault(k, 0.0)
            self.counts.setdefault(k, 0)
            if v is not None:
                self.sums[k] += float(v)
                self.counts[k] += 1

    def flush(self, step: int, **extra: Any) -> None:
        keys = sorted(self.sums)
        local = torch.tensor([[self.sums[k] for k in keys], [self.counts[k] for k in keys]], dtype=torch.float64,
                             device=self.acc.device)
        total = self.acc.reduce(local, reduction="sum") if self.acc.num_processes > 1 else local
        record = {"step": step, **{k: round(v, 8) for k, v in extra.items()}}
        for k, s, n in zip(keys, total[0].tolist(), total[1].tolist()):
            record[k] = s / n if n else None
        if self.writer:
            self.writer.write(record)
            self.writer.commit()
        self.sums, self.counts = {}, {}

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def run_training(cfg: TrainConfig, method: str, body: Callable[[Session], Path]) -> Path:
    """Create the session, run `body`, and write OUTPUT/train/status.json whatever happens."""
    from accelerate import PartialState

    train_dir = Path(cfg.output_dir) / "train"
    main = PartialState(cpu=use_cpu_backend()).is_main_process
    config = {"method": method, **config_to_dict(cfg), "model_fingerprint": _model_fingerprint(cfg.model)}
    done = _finished(train_dir, config) if cfg.resume else None
    if done is not None:  # the same run already finished (e.g. train-and-eval re-run after an eval crash)
        if main:
            print(f"{train_dir}: this run already finished; returning {done} (set resume=false to retrain)")
        return done
    if main:
        check_train_dir(cfg, method)
        _check_same_config(train_dir, config, cfg.resume)
        if not cfg.resume:
            shutil.rmtree(train_dir / "checkpoints", ignore_errors=True)
        train_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(train_dir / "config.json", config)
        write_status(train_dir, "running", checkpoint=None, method=method)
    try:
        final = body(Session(cfg, method))
    except BaseException as e:
        if main:
            write_status(train_dir, "failed", f"{type(e).__name__}: {e}", checkpoint=None, method=method,
                         traceback=traceback.format_exc(limit=20))
        raise
    if main:
        write_status(train_dir, "ok", checkpoint=str(final), method=method)
    return final


def _model_fingerprint(spec: str | None) -> str | None:
    """Weights fingerprint of the starting model (a rebuilt checkpoint at the same path is a new run)."""
    from halbench.models.hf import dir_fingerprint

    try:
        return dir_fingerprint(resolve_model(spec))
    except (OSError, HalbenchError):  # missing dir: Session raises the clear ModelLoadError
        return None


def _finished(train_dir: Path, config: dict[str, Any]) -> Path | None:
    """The final checkpoint of a finished run with exactly these settings, else None."""
    try:
        status = json.loads((train_dir / "status.json").read_text())
        old = json.loads((train_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    final = train_dir / "final"
    same = all(old.get(k) == config.get(k) for k in set(old) | set(config) if k not in BOOKKEEPING)
    # the same dir given once as an absolute and once as a relative path is the same finished run
    ok = status.get("status") == "ok" and Path(str(status.get("checkpoint"))).resolve() == final.resolve()
    return final if same and ok and (final / "config.json").is_file() else None


def check_train_dir(cfg: TrainConfig, method: str) -> None:
    """Refuse, before anything is written, a train dir holding another run that finished or has checkpoints
    (train-and-eval calls this before its base eval; resume=false means: retrain here on purpose)."""
    train_dir = Path(cfg.output_dir) / "train"
    if not getattr(cfg, "resume", True) or not (train_dir / "config.json").is_file():
        return  # (a third-party method's Config need not be a TrainConfig)
    config = {"method": method, **config_to_dict(cfg), "model_fingerprint": _model_fingerprint(cfg.model)}
    try:
        old = json.loads((train_dir / "config.json").read_text())
    except ValueError:
        return
    changed = sorted(k for k in set(old) | set(config) if k not in BOOKKEEPING and old.get(k) != config.get(k))
    finished = (train_dir / "final" / "config.json").is_file()
    if changed and (finished or _checkpoints(train_dir / "checkpoints")):
        what = "a finished run" if finished else "checkpoints of a run"
        raise HalbenchError(f"{train_dir} holds {what} ({old.get('method')}) with different settings "
                            f"({', '.join(changed)}); use another --output-dir, delete it, or set resume=false")


def _check_same_config(train_dir: Path, config: dict[str, Any], resume: bool) -> None:
    old_path = train_dir / "config.json"
    if not resume or not old_path.is_file() or not _checkpoints(train_dir / "checkpoints"):
        return
    old = json.loads(old_path.read_text())
    changed = sorted(k for k in set(old) | set(config) if k not in BOOKKEEPING and old.get(k) != config.get(k))
    if changed:
        raise HalbenchError(f"{train_dir} holds checkpoints of a run with different settings ({', '.join(changed)}); "
                            "use another --output-dir, delete it, or set resume=false")
