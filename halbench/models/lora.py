"""A peft LoRA adapter directory as `--model`: resolve its base, merge, and hand halbench an ordinary checkpoint.

Card. Source: the peft adapter format (adapter_config.json with `base_model_name_or_path`, `peft_type`,
`target_modules`, ...; adapter_model.safetensors or adapter_model.bin), as `PeftModel.save_pretrained` writes
it and as LoRA-tuned hallucination checkpoints are released. The base is `--base-model DIR` if given, else
adapter_config.json's `base_model_name_or_path` when it is a local directory or a repo already in the local
Hugging Face cache (nothing is downloaded). The adapter is applied with `PeftModel.from_pretrained` and merged
with `merge_and_unload()` (exact for LoRA: W + B A * scaling), and the merged model is saved once into the user
cache (HALBENCH_CACHE_DIR or ~/.cache/halbench, lora-merged/) under a key hashed from the contents of the base
AND the adapter, so the run fingerprint covers both. The base's tokenizer / processor files are copied along
(the adapter's own tokenizer files, if it ships any, take precedence). An adapter trained with the original LLaVA code (its base or its
own config.json in the haotian-liu/LLaVA layout) is merged in that layout and then converted
(halbench.models.lora_original).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from halbench.errors import HalbenchError, ModelLoadError

#: Set by the CLI's --base-model option (halbench.cli_common.model_options); load_model(base_model=) wins.
_cli_base_model: str | None = None
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
                    "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


def set_cli_base_model(value: str | None) -> None:
    global _cli_base_model
    _cli_base_model = value


def is_lora_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def read_adapter_config(adapter: Path) -> dict:
    f = adapter / "adapter_config.json"
    try:
        cfg = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{f}: cannot read the adapter config ({e})") from e
    if not any((adapter / w).is_file() for w in _ADAPTER_WEIGHTS):
        raise ModelLoadError(f"{adapter}: adapter_config.json but no {' or '.join(_ADAPTER_WEIGHTS)}")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise ModelLoadError(f"{f}: peft_type {cfg.get('peft_type')!r}; only LoRA adapters are merged")
    return cfg


def resolve_base(adapter: Path, cfg: dict, base_model: str | Path | None = None) -> Path:
    """--base-model DIR, else base_model_name_or_path as a local dir or a repo in the local HF cache."""
    if base_model is not None:
        d = Path(base_model).expanduser()
        if not (d / "config.json").is_file():
            raise ModelLoadError(f"--base-model {d}: not a checkpoint directory (no config.json)")
        return d
    name = cfg.get("base_model_name_or_path")
    if name:
        from halbench.models.convert import _hf_cache_snapshot

        for cand in (Path(str(name)).expanduser(), _hf_cache_snapshot(str(name))):
            if cand is not None and (cand / "config.json").is_file():
                return cand
    raise ModelLoadError(
        f"{adapter / 'adapter_config.json'}: base_model_name_or_path {name!r} is not a local directory (nor in "
        "the Hugging Face cache); pass the base checkpoint with --base-model DIR"
    )


def _adapter_digest(adapter: Path) -> str:
    h = hashlib.sha256()
    # + what LLaVA's LoRA scripts save beside the adapter (tuned mm_projector, mm_* config)
    for name in ("adapter_config.json",) + _ADAPTER_WEIGHTS + ("non_lora_trainables.bin", "config.json"):
        f = adapter / name
        if f.is_file():
            h.update(name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def merge_lora(adapter: str | Path, out: str | Path, base_model: str | Path | None = None, *,
               cached: bool = False, vision_tower: str | Path | None = None) -> Path:
    """Merge `adapter` into its base and save an ordinary checkpoint at `out` (appears only when complete).
    `cached`: `out` is a cache entry keyed by content: keep it if another process completes it first.
    `vision_tower`: the CLIP dir, for an adapter over an original-LLaVA base (see lora_original)."""
    from halbench.models.convert import publish, staging_dir
    from halbench.models.lora_original import is_original_llava_adapter

    adapter, out = Path(adapter).expanduser(), Path(out).expanduser()
    cfg = read_adapter_config(adapter)
    base = resolve_base(adapter, cfg, base_model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    try:
        if is_original_llava_adapter(adapter, base):
            _merge_original(adapter, base, cfg, tmp, vision_tower)
        else:
            _merge_with_peft(adapter, base, tmp)
        (tmp / "LORA_MERGED.json").write_text(json.dumps(
            {"adapter": str(adapter.resolve()), "base": str(base.resolve()), "adapter_sha256": _adapter_digest(adapter),
             "merge": "peft merge_and_unload"}, indent=2) + "\n")
        publish(tmp, out, "LORA_MERGED.json" if cached else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _merge_with_peft(adapter: Path, base: Path, tmp: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    try:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as e:
        why = f"{type(e).__name__}: {e}"
        raise ModelLoadError(f"{adapter}: the adapter does not fit the base {base} ({why})") from e
    with torch.no_grad():
        model.save_pretrained(tmp, safe_serialization=True)
    for name in _PROCESSOR_FILES:
        for d in (adapter, base):  # the adapter's own tokenizer files (resized vocab) first
            if (d / name).is_file():
                shutil.copy2(d / name, tmp / name)
                break


def _merge_original(adapter: Path, base: Path, cfg: dict, tmp: Path, vision_tower) -> None:
    """Merge in the original-LLaVA layout, then convert that to llava-hf into `tmp`."""
    from halbench.models.convert import convert_original_llava
    from halbench.models.lora_original import merge_original_llava_lora

    merged = tmp.with_name(tmp.name + "-original")
    shutil.rmtree(merged, ignore_errors=True)
    try:
        merge_original_llava_lora(adapter, base, cfg, merged)
        convert_original_llava(merged, tmp, vision_tower=vision_tower, overwrite=True)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def merged_checkpoint(adapter: str | Path, base_model: str | Path | None = None) -> Path:
    """`--model ADAPTER`: the merged checkpoint in the user cache, built once per (base, adapter) contents."""
    from halbench.models.convert import cache_root
    from halbench.models.hf import dir_fingerprint

    adapter = Path(adapter).expanduser()
    base_model = base_model if base_model is not None else _cli_base_model
    cfg = read_adapter_config(adapter)
    base = resolve_base(adapter, cfg, base_model)
    key = hashlib.sha256(f"{dir_fingerprint(base)}|{_adapter_digest(adapter)}".encode()).hexdigest()[:16]
    out = cache_root() / "lora-merged" / f"{adapter.name}-{key}"
    if not (out / "LORA_MERGED.json").is_file():
        print(f"halbench: merging LoRA adapter {adapter} into {base} -> {out} (once)", file=sys.stderr, flush=True)
        merge_lora(adapter, out, base, cached=True)
    return out


def prepare_checkpoint(path: str | Path, base_model: str | Path | None = None) -> Path:
    """What `--model DIR` should load: a merged LoRA adapter, a converted original-LLaVA dir, or DIR itself."""
    from halbench.models.convert import converted_checkpoint, is_original_llava

    path = Path(path).expanduser()
    base_model = base_model if base_model is not None else _cli_base_model
    if is_lora_adapter(path):
        return merged_checkpoint(path, base_model)
    if base_model is not None:
        raise HalbenchError(f"--base-model given but {path} is not a LoRA adapter (no adapter_config.json)")
    if is_original_llava(path):
        return converted_checkpoint(path)
    return path
