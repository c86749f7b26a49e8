"""What every training method is: a name, a Config dataclass, a `train(cfg) -> Path`, and the paper.

The registry finds methods through the `halbench.methods` entry points (pyproject.toml); each points at a
module attribute `METHOD = TrainingMethod(...)`. `halbench train --method NAME --set key=value` builds
`METHOD.Config(**values)` and calls `METHOD.train(cfg)`, which returns the final checkpoint: a standard
Hugging Face directory (config.json, model.safetensors, processor files) that `halbench eval --model` loads.

Config fields carry their documentation in `field(metadata={"help": ..., "paper": ...})`, built with `hp()`:
"help" is one line for `--help`/the method card, "paper" is the value the source paper used (or says why it
is not known). `config_help()` renders them; tests assert every field has both.

`TrainConfig` holds the fields every method shares (model, data, output_dir, seed, optimisation, LoRA,
checkpointing); a method's Config subclasses it and adds its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from halbench.errors import HalbenchError

#: placeholder for "paper" when the value is a halbench choice the paper says nothing about
NOT_IN_PAPER = "n/a (halbench setting)"


def hp(default: Any = dataclasses.MISSING, help: str = "", paper: Any = NOT_IN_PAPER, *,
       default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with help text and the paper's value in its metadata."""
    if not help:
        raise ValueError("every Config field needs help text")
    meta = {"help": help, "paper": paper}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Settings shared by every method (the shared loop in training/loop.py reads these)."""

    model: str | None = hp(None, "Policy checkpoint (HF dir or hf:DIR). Default: the embedded world's VLM.",
                           "LLaVA-1.6-7B (BDHS study); LLaVA-1.5-7B and InstructBLIP (FiSAO)")
    output_dir: str = hp("runs/train", "OUTPUT dir; training writes OUTPUT/train/ (metrics.jsonl, status.json, "
                         "checkpoints/, final/).")
    data: str | None = hp(None, "Preference data: JSONL (image, prompt, chosen, rejected) or a saved HF dataset "
                          "dir. Default: the method's embedded-world data.")
    image_root: str | None = hp(None, "Folder that relative image paths in `data` are resolved against "
                                "(default: the data file's folder).")
    seed: int = hp(0, "Seed for data order, sampling and initialisation of new weights (LoRA).")
    learning_rate: float = hp(5e-5, "AdamW peak learning rate (the world's tiny VLM needs more than a 7B model).",
                              "BDHS study grid {1e-7, 5e-7, 1e-6, 5e-6}; FiSAO not specified")
    num_epochs: int = hp(1, "Passes over the data.", "BDHS study grid {3, 5, 7}; FiSAO not specified")
    max_steps: int | None = hp(None, "Stop after this many optimizer steps (overrides num_epochs when set).")
    per_device_batch_size: int = hp(4, "Preference pairs (or prompts) per process per micro-batch.")
    gradient_accumulation_steps: int = hp(1, "Micro-batches per optimizer step; global batch = "
                                          "per_device_batch_size x processes x this.")
    warmup_ratio: float = hp(0.1, "Linear warm-up fraction of the steps, then linear decay to 0.")
    weight_decay: float = hp(0.0, "AdamW weight decay.")
    max_grad_norm: float = hp(1.0, "Gradient clipping norm (0 disables).")
    max_length: int = hp(512, "Maximum tokens per sequence (prompt with image tokens + response); longer "
                         "responses are truncated, rows whose image tokens would be cut are rejected.")
    bad_rows: str = hp("skip", "What to do with invalid preference rows: 'skip' (drop them, report a count and "
                       "row numbers) or 'refuse' (stop before training).")
    freeze_vision_tower: bool = hp(True, "Keep the vision encoder frozen (train projector + language model).",
                                   "not specified")
    lora: bool = hp(False, "Train LoRA adapters (peft) on the language model instead of all weights; the final "
                    "checkpoint is merged into a full HF dir.")
    lora_r: int = hp(16, "LoRA rank (preset=paper: 128).", "128 (BDHS study, Appendix A)")
    lora_alpha: int = hp(32, "LoRA alpha (preset=paper: 256).", "256 (BDHS study, Appendix A)")
    lora_dropout: float = hp(0.0, "LoRA dropout.")
    lora_target_modules: str = hp(r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
                                  "Regex of module names that get adapters (peft target_modules).")
    logging_steps: int = hp(1, "Write a metrics.jsonl line every N optimizer steps.")
    save_steps: int = hp(50, "Save a resumable checkpoint every N optimizer steps (0: only at the end).")
    save_total_limit: int = hp(2, "Keep at most this many intermediate checkpoints.")
    resume: bool = hp(True, "Resume from the last checkpoint in OUTPUT/train/checkpoints when there is one.")
    precompute_ref: bool = hp(True, "Compute reference log-probs once before training and cache them on disk "
                              "(offline data only); else run the reference model every step.")
    ref_cache_dir: str | None = hp(None, "Reference log-prob cache (default: $HALBENCH_CACHE_DIR or "
                                   "~/.cache/halbench, subfolder ref_logps).")
    ref_model: str | None = hp(None, "Reference model checkpoint (HF dir or hf:DIR) for the KL/DPO reference, "
                               "when it is not the starting policy (default: the starting weights; with LoRA "
                               "the adapter-free base). Must share the policy's tokenizer.",
                               "the SFT model (= the starting policy)")
    projector_learning_rate: float | None = hp(None, "Separate AdamW learning rate of the multimodal projector "
                                               "(parameters named *multi_modal_projector* / *mm_projector*); "
                                               "None: learning_rate.",
                                               "grid {2e-5, 2e-6, 2e-7} (BDHS study, Appendix A; chosen value "
                                               "not disclosed)")
    preset: str | None = hp(None, "Named settings applied to fields left at their defaults: 'paper' = the BDHS "
                            "study's disclosed values (LoRA on, r 128, alpha 256, plus each method's own; see "
                            "`halbench methods --card`). Values you set yourself win.")

    #: preset name -> field values; subclasses add their own (merged along the MRO, subclass wins)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"lora": True, "lora_r": 128, "lora_alpha": 256}}

    def __post_init__(self) -> None:
        coerce_fields(self)
        apply_preset(self)

    def check(self) -> None:
        """Validate values (called by train() before any work)."""
        if self.bad_rows not in ("skip", "refuse"):
            raise HalbenchError(f"bad_rows must be 'skip' or 'refuse', got {self.bad_rows!r}")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "num_epochs", "max_length"):
            if int(getattr(self, name)) < 1:
                raise HalbenchError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise HalbenchError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.ref_model:
            ref = Path(self.ref_model[3:] if self.ref_model.startswith("hf:") else self.ref_model).expanduser()
            if not (ref / "config.json").is_file():
                raise HalbenchError(f"ref_model {self.ref_model!r}: no checkpoint (config.json) in {ref}")
        if self.projector_learning_rate is not None and self.projector_learning_rate <= 0:
            raise HalbenchError(f"projector_learning_rate must be > 0, got {self.projector_learning_rate}")


def presets(config_cls: type) -> dict[str, dict[str, Any]]:
    """The presets of a Config class, merged along its MRO (a subclass's values win)."""
    out: dict[str, dict[str, Any]] = {}
    for cls in reversed(config_cls.__mro__):
        for name, values in cls.__dict__.get("PRESETS", {}).items():
            out.setdefault(name, {}).update(values)
    return out


def apply_preset(cfg: Any) -> None:
    """Set the preset's values on fields still at their class default (explicit settings win; a value set
    explicitly to the default itself is indistinguishable from the default and takes the preset's)."""
    name = getattr(cfg, "preset", None)
    if not name:
        return
    table = presets(type(cfg))
    if name not in table:
        raise HalbenchError(f"unknown preset {name!r} for {type(cfg).__module__}; known: {', '.join(sorted(table))}")
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for key, value in table[name].items():
        if getattr(cfg, key) == defaults.get(key):
            setattr(cfg, key, value)


_CASTS = {"float": float, "int": int, "bool": None}


def coerce_fields(cfg: Any) -> None:
    """Turn string values of float/int/bool fields into those types ('--set learning_rate=1e-4' arrives as
    the string '1e-4': YAML 1.1 reads exponents without a dot as text); a bad value names its field."""
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), str(f.type).replace(" | None", "").strip()
        if not isinstance(value, str) or kind not in _CASTS:
            continue
        try:
            if kind == "bool":
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                new = value.lower() in ("true", "1", "yes")
            else:
                new = _CASTS[kind](float(value)) if kind == "int" and float(value).is_integer() else _CASTS[kind](value)
        except ValueError as e:
            raise HalbenchError(f"setting {f.name}={value!r}: expected {kind}") from e
        setattr(cfg, f.name, new)


@dataclass(frozen=True)
class TrainingMethod:
    """A registered training method. `train(cfg)` returns the final HF checkpoint directory."""

    name: str
    Config: type
    train: Callable[[Any], Path]
    paper: str
    description: str = ""

    def help(self) -> list[dict[str, Any]]:
        """One dict per Config field: name, default, help, paper."""
        return config_fields(self.Config)

    def card(self) -> str:
        table = presets(self.Config)
        named = "; ".join(f"{k}: " + ", ".join(f"{f}={v!r}" for f, v in vals.items()) for k, vals in table.items())
        return (f"{self.name}: {self.description}\nsource: {self.paper}\npresets (--set preset=NAME): {named}\n\n"
                f"{config_help(self.Config)}")


def config_fields(config_cls: type) -> list[dict[str, Any]]:
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append({"name": f.name, "default": default, "help": f.metadata.get("help", ""),
                     "paper": f.metadata.get("paper", NOT_IN_PAPER)})
    return rows


def config_help(config_cls: type) -> str:
    """A plain-text table of the Config fields: name = default  help  [paper: value]."""
    lines = []
    for row in config_fields(config_cls):
        lines.append(f"{row['name']} = {row['default']!r}\n    {row['help']}  [paper: {row['paper']}]")
    return "\n".join(lines)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
