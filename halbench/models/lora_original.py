"""LoRA adapters trained with the original LLaVA code (haotian-liu/LLaVA), merged in the ORIGINAL layout.

Card. Source: haotian-liu/LLaVA `scripts/v1_5/finetune_lora.sh` + `llava/train/train.py` (the adapter is a peft
LoRA over `LlavaLlamaForCausalLM`, so its keys name original modules: `base_model.model.model.layers.N...`;
the LLaVA code also saves the tuned non-LoRA weights - the mm_projector - in `non_lora_trainables.bin`, and a
config.json with the mm_* fields) and `llava/model/builder.py` (`load_pretrained_model` for "lora" models: base
LM + config from the adapter dir, `non_lora_trainables.bin` loaded over it with the `base_model.` / `model.`
prefixes stripped, then `PeftModel.from_pretrained(...).merge_and_unload()`). Alignment releases such as HA-DPO
and POVID ship this way. peft cannot apply such an adapter to the llava-hf layout (module names differ), so it
is merged here on the original state dict with peft's LoRA formula, W += (B @ A) * lora_alpha / r (alpha /
sqrt(r) with use_rslora), and the merged original-layout checkpoint is then converted
(halbench.models.convert). Refused up front: DoRA, rank/alpha patterns, fan_in_fan_out, modules_to_save,
LoRA on embeddings - none of which LLaVA's scripts use.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from halbench.errors import ModelLoadError

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                    "added_tokens.json", "generation_config.json")


def is_original_llava_adapter(adapter: Path, base: Path) -> bool:
    """An adapter over the original LLaVA layout: its own config.json or its base is original LLaVA."""
    from halbench.models.convert import is_original_llava

    return is_original_llava(adapter) or is_original_llava(base)


def check_lora_config(adapter: Path, cfg: dict) -> None:
    where = adapter / "adapter_config.json"
    bad = [name for name, on in (
        ("use_dora", cfg.get("use_dora")), ("rank_pattern", cfg.get("rank_pattern")),
        ("alpha_pattern", cfg.get("alpha_pattern")), ("fan_in_fan_out", cfg.get("fan_in_fan_out")),
        ("modules_to_save", cfg.get("modules_to_save"))) if on]
    if bad:
        raise ModelLoadError(f"{where}: {', '.join(bad)} set; merging such adapters over an original-LLaVA base "
                             "is not supported (LLaVA's own LoRA scripts do not use them)")


def _scaling(cfg: dict) -> float:
    r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", 8))
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _adapter_tensors(adapter: Path) -> dict[str, Any]:
    from halbench.models.convert import _load_tensors

    files = [adapter / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (adapter / n).is_file()]
    return _load_tensors(files[:1])


def lora_deltas(adapter: Path, cfg: dict) -> dict[str, Any]:
    """{original weight key: delta} from peft's saved lora_A / lora_B pairs."""
    sd, scale, out = _adapter_tensors(adapter), _scaling(cfg), {}
    for key, a in sd.items():
        if ".lora_embedding_" in key:
            raise ModelLoadError(f"{adapter}: LoRA on embeddings ({key}) is not supported over an original-LLaVA base")
        if not key.endswith(".lora_A.weight"):
            continue
        b = sd.get(key.replace(".lora_A.weight", ".lora_B.weight"))
        if b is None:
            raise ModelLoadError(f"{adapter}: {key} has no matching lora_B")
        module = key[: -len(".lora_A.weight")].removeprefix("base_model.model.")
        out[module + ".weight"] = (b.float() @ a.float()) * scale
    if not out:
        raise ModelLoadError(f"{adapter}: no lora_A / lora_B weights in the adapter")
    return out


def _non_lora_trainables(adapter: Path) -> dict[str, Any]:
    """LLaVA builder.py's prefix handling: strip `base_model.`, then `model.` if keys start with `model.model.`."""
    import torch

    f = adapter / "non_lora_trainables.bin"
    if not f.is_file():
        return {}
    sd = torch.load(f, map_location="cpu", weights_only=True)
    sd = {(k[len("base_model."):] if k.startswith("base_model.") else k): v for k, v in sd.items()}
    if any(k.startswith("model.model.") for k in sd):
        sd = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in sd.items()}
    return sd


def merge_original_llava_lora(adapter: Path, base: Path, cfg: dict, out: Path) -> Path:
    """Write `out`: the base's original-layout weights with the adapter merged (a dir `convert` accepts)."""
    from safetensors.torch import save_file

    from halbench.models.convert import _load_tensors, _weight_files, is_original_llava

    check_lora_config(adapter, cfg)
    config_dir = adapter if is_original_llava(adapter) else base  # LLaVA LoRA dirs carry the mm_* config
    sd = _load_tensors(_weight_files(base))
    sd.update(_non_lora_trainables(adapter))
    for key, delta in lora_deltas(adapter, cfg).items():
        if key not in sd:
            raise ModelLoadError(f"{adapter}: the adapter targets {key}, which the base {base} does not have")
        if tuple(sd[key].shape) != tuple(delta.shape):
            raise ModelLoadError(f"{adapter}: {key} is {tuple(delta.shape)} in the adapter, "
                                 f"{tuple(sd[key].shape)} in the base {base}")
        sd[key] = (sd[key].float() + delta).to(sd[key].dtype)
    if not any(k.startswith("model.mm_projector.") for k in sd):
        raise ModelLoadError(f"{adapter}: no mm_projector weights in the base {base} or in non_lora_trainables.bin")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy2(config_dir / "config.json", out / "config.json")
    for name in _TOKENIZER_FILES:
        for d in (adapter, base):
            if (d / name).is_file():
                shutil.copy2(d / name, out / name)
                break
    (out / "LORA_MERGED.json").write_text(json.dumps({"adapter": str(adapter.resolve()), "base": str(base.resolve()),
                                                      "merge": "original-LLaVA layout, W += B A * scaling"}) + "\n")
    return out
