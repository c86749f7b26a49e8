"""Original-LLaVA checkpoints (haotian-liu/LLaVA layout) -> the transformers llava-hf layout.

Card. Source: haotian-liu/LLaVA (`LlavaLlamaForCausalLM`: config.json with `model_type` "llava" or
"llava_llama", `mm_vision_tower`, `mm_hidden_size`, `mm_projector_type`, `mm_vision_select_layer`,
`mm_vision_select_feature`, `mm_patch_merge_type`, `image_aspect_ratio`; weights `model.*` / `lm_head.*` of
the Llama LM plus `model.mm_projector.{0,2}.*`; a tokenizer with no <image> token; the CLIP tower's weights are
NOT in the checkpoint unless it was tuned). Many hallucination-alignment releases ship this way (LLaVA-RLHF,
POVID, RLAIF-V, HA-DPO). Parity: the key mapping and tokenizer changes follow transformers'
models/llava/convert_llava_weights_to_hf.py (KEYS_TO_MODIFY_MAPPING, written for transformers 5's module
names: `model.language_model.*`, `model.multi_modal_projector.linear_{1,2}.*`, `model.vision_tower.*`;
<image> and <pad> appended to the tokenizer; embeddings padded to a multiple of 64). Differences, both
deliberate: the new embedding rows are set to the mean of the old rows (the script samples around that mean
with 1e-5 covariance: random, and the rows are never read - <image> positions are overwritten by image
features, <pad> is masked), and `image_aspect_ratio: pad` becomes LlavaImageProcessor(do_pad=True), which pads
to a square with the mean colour exactly like the original `expand2square` (the script keeps CLIP's plain
resize-and-crop). Prompts are tokenized by the llava-hf processor: with a SentencePiece tokenizer the original
`tokenizer_image_token` encodes the text after <image> as a separate chunk (one extra "▁" piece there), which
transformers' conversion does not reproduce either. Refused up front: projectors other than mlp2x_gelu,
`mm_use_im_start_end`, patch merge types other than flat (LLaVA-1.6 anyres checkpoints), select features other
than patch / cls_patch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from halbench.errors import HalbenchError, ModelLoadError

ORIGINAL_ARCHS = {"LlavaLlamaForCausalLM"}
_MM_KEYS_PREFIX = ("mm_", "tune_mm_", "freeze_mm_", "unfreeze_mm_")
_LLAVA_ONLY_KEYS = {"image_aspect_ratio", "image_grid_pinpoints", "tokenizer_model_max_length", "tokenizer_padding_side",
                    "use_mm_proj", "mm_projector_lr", "image_crop_resolution", "image_split_resolution"}
_SELECT = {"patch": "default", "cls_patch": "full"}
_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


def read_config(path: Path) -> dict:
    f = Path(path) / "config.json"
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{f}: cannot read the checkpoint config ({e})") from e


def is_original_llava(path: str | Path) -> bool:
    """True for a directory in the haotian-liu/LLaVA layout (see module card)."""
    f = Path(path) / "config.json"
    if not f.is_file():
        return False
    try:
        cfg = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    archs = set(cfg.get("architectures") or [])
    return "text_config" not in cfg and (bool(archs & ORIGINAL_ARCHS) or "mm_vision_tower" in cfg)


def check_supported(src: Path, cfg: dict) -> None:
    """Refuse, before anything is read or written, the original-LLaVA variants the llava-hf layout cannot hold."""
    where = f"{src / 'config.json'}"
    problems = []
    if cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        problems.append(f"mm_projector_type {cfg.get('mm_projector_type', 'linear')!r} (only 'mlp2x_gelu', "
                        "LLaVA-1.5's, maps to LlavaForConditionalGeneration's projector)")
    if cfg.get("mm_use_im_start_end"):
        problems.append("mm_use_im_start_end true (image start/end tokens are not part of the llava-hf layout)")
    if cfg.get("mm_patch_merge_type", "flat") != "flat":
        problems.append(f"mm_patch_merge_type {cfg['mm_patch_merge_type']!r} (an anyres LLaVA-1.6 checkpoint; "
                        "only flat, LLaVA-1.5's, is converted)")
    if cfg.get("mm_vision_select_feature", "patch") not in _SELECT:
        problems.append(f"mm_vision_select_feature {cfg['mm_vision_select_feature']!r} (patch or cls_patch)")
    if not cfg.get("mm_vision_tower"):
        problems.append("no mm_vision_tower")
    if problems:
        raise ModelLoadError(f"{where}: cannot convert this original-LLaVA checkpoint: " + "; ".join(problems))


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    """A model already in the local Hugging Face cache (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, not a repo id, or no huggingface_hub: the caller reports what to pass
        return None


def resolve_vision_tower(src: Path, cfg: dict, vision_tower: str | Path | None) -> Path:
    """--vision-tower DIR, else mm_vision_tower as a local dir, else that repo in the local HF cache."""
    name = cfg.get("mm_vision_tower")
    if vision_tower is not None:
        d = Path(vision_tower).expanduser()
        if not (d / "config.json").is_file():
            raise ModelLoadError(f"--vision-tower {d}: not a checkpoint directory (no config.json)")
        return d
    for cand in (Path(str(name)).expanduser(), _hf_cache_snapshot(str(name))):
        if cand is not None and (cand / "config.json").is_file():
            return cand
    raise ModelLoadError(
        f"{src / 'config.json'}: the vision tower {name!r} (mm_vision_tower) is not a local directory and not in "
        f"the Hugging Face cache; its weights are not inside original-LLaVA checkpoints. Download it and run "
        f"`halbench convert {src} OUT --vision-tower DIR`"
    )


def _weight_files(src: Path) -> list[Path]:
    files = sorted({p for g in _WEIGHT_GLOBS for p in src.glob(g)})
    if not files:
        raise ModelLoadError(f"{src}: no weights (*.safetensors or pytorch_model*.bin)")
    return files


def _load_tensors(files: list[Path]) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    sd: dict[str, Any] = {}
    for f in files:
        sd.update(load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, map_location="cpu",
                                                                                  weights_only=True))
    return sd


#: original LLaVA prefix -> llava-hf prefix, as transformers' KEYS_TO_MODIFY_MAPPING produces them (the layout of
#: llava-hf/llava-1.5-7b-hf's safetensors; transformers 4 and 5 both load it).
KEY_PREFIXES = (
    ("model.mm_projector.0.", "multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "multi_modal_projector.linear_2."),
    ("model.vision_tower.vision_tower.vision_model.", "vision_tower.vision_model."),  # a tower tuned in the ckpt
    ("model.embed_tokens.", "language_model.model.embed_tokens."),
    ("model.layers.", "language_model.model.layers."),
    ("model.norm.", "language_model.model.norm."),
    ("lm_head.", "language_model.lm_head."),
)
#: llava-hf prefix -> transformers 5 module prefix (only to check the key set against the model, see _check_keys).
_V5_PREFIXES = (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                ("multi_modal_projector.", "model.multi_modal_projector."), ("vision_tower.vision_model.",
                                                                            "model.vision_tower."))
EMBED, HEAD = "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"


def _swap_prefix(key: str, table) -> str | None:
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def map_llava_keys(sd: dict[str, Any], src: Path) -> dict[str, Any]:
    """Original LLaVA state-dict keys -> llava-hf keys (KEY_PREFIXES; see card)."""
    out, unknown = {}, []
    for key, value in sd.items():
        if key.endswith(".inv_freq") or key == "model.image_newline":  # buffers / unused by flat merge
            continue
        new = _swap_prefix(key, KEY_PREFIXES)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ModelLoadError(f"{src}: unexpected weights for an original-LLaVA checkpoint: {', '.join(unknown[:8])}"
                             + (f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else ""))
    return out


def _vision_tensors(vision_dir: Path) -> dict[str, Any]:
    sd = _load_tensors(_weight_files(vision_dir))
    out = {"vision_tower." + k: v for k, v in sd.items() if k.startswith("vision_model.")}
    if not out:
        raise ModelLoadError(f"{vision_dir}: no vision_model.* weights (expected a CLIP / CLIPVision checkpoint)")
    return out


def _grow_rows(weight, n: int):
    """Pad a [V, H] matrix to n rows with the mean row (see card: the script samples around the mean)."""
    import torch

    extra = weight.float().mean(dim=0, keepdim=True).to(weight.dtype).expand(n - weight.shape[0], -1)
    return torch.cat([weight, extra], dim=0).contiguous()


def _tokenizer(src: Path):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src)
    except Exception as e:  # e.g. a sentencepiece tokenizer.model without sentencepiece installed
        raise ModelLoadError(f"{src}: cannot load the tokenizer ({type(e).__name__}: {e})") from e
    if "<image>" in tok.get_vocab():
        raise ModelLoadError(f"{src}: the tokenizer already has an <image> token; this is not an original-LLaVA "
                             "checkpoint (try loading it directly)")
    # as convert_llava_weights_to_hf.py: <image> then <pad> appended as special tokens
    tok.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.padding_side = "left"
    return tok


def _text_config(cfg: dict, vocab_size: int):
    from transformers import LlamaConfig

    keep = {k: v for k, v in cfg.items() if not k.startswith(_MM_KEYS_PREFIX) and k not in _LLAVA_ONLY_KEYS
            and k not in ("architectures", "model_type", "_name_or_path", "transformers_version")}
    text = LlamaConfig(**{**keep, "vocab_size": vocab_size})
    text.architectures = ["LlamaForCausalLM"]
    return text


def build_llava_config(src: Path, cfg: dict, vision_dir: Path, tok, vocab_size: int):
    from transformers import CLIPVisionConfig, LlavaConfig

    vision = CLIPVisionConfig.from_pretrained(vision_dir)
    if cfg.get("mm_hidden_size") not in (None, vision.hidden_size):
        raise ModelLoadError(f"{src / 'config.json'}: mm_hidden_size {cfg['mm_hidden_size']} does not match the "
                             f"vision tower {vision_dir} (hidden_size {vision.hidden_size}): wrong --vision-tower?")
    config = LlavaConfig(
        text_config=_text_config(cfg, vocab_size), vision_config=vision,
        image_token_index=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id,
        projector_hidden_act="gelu", vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy=_SELECT[cfg.get("mm_vision_select_feature", "patch")],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,  # 576 for CLIP-L/336, as llava-hf has it
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def _processor(cfg: dict, vision_dir: Path, tok, config):
    from transformers import AutoImageProcessor, LlavaImageProcessorPil, LlavaProcessor

    from halbench.testing.tiny_templates import LLAVA_15

    ip = AutoImageProcessor.from_pretrained(vision_dir)
    if cfg.get("image_aspect_ratio") == "pad":  # original expand2square: pad to a square with the mean colour
        fields = {k: v for k, v in ip.to_dict().items() if k not in ("image_processor_type", "processor_class")}
        ip = LlavaImageProcessorPil(**{**fields, "do_pad": True})
    return LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=config.vision_config.patch_size,
                          vision_feature_select_strategy=config.vision_feature_select_strategy,
                          num_additional_image_tokens=1, chat_template=LLAVA_15)


def _assemble(src: Path, vision_dir: Path, cfg: dict):
    """-> (state dict in the llava-hf layout, LlavaConfig, LlavaProcessor), all checks done."""
    import torch

    tok = _tokenizer(src)
    sd = map_llava_keys(_load_tensors(_weight_files(src)), src)
    embed_key, head_key = EMBED, HEAD
    if embed_key not in sd:
        raise ModelLoadError(f"{src}: no model.embed_tokens.weight in the checkpoint")
    dtype = sd[embed_key].dtype
    sd.setdefault(head_key, sd[embed_key].clone())  # tied checkpoints do not store lm_head
    for k, v in _vision_tensors(vision_dir).items():
        sd.setdefault(k, v)  # a tower tuned inside the checkpoint wins over the stock one
    vocab = -(-len(tok) // 64) * 64  # the script's pad_to_multiple_of=64
    sd[embed_key], sd[head_key] = _grow_rows(sd[embed_key], vocab), _grow_rows(sd[head_key], vocab)
    sd = {k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in sd.items()}
    config = build_llava_config(src, cfg, vision_dir, tok, vocab)
    config.dtype = str(dtype).removeprefix("torch.")
    _check_keys(src, config, sd)
    return sd, config, _processor(cfg, vision_dir, tok, config)


def _check_keys(src: Path, config, sd: dict) -> None:
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        expected = set(LlavaForConditionalGeneration(config).state_dict())
    have = {_swap_prefix(k, _V5_PREFIXES) or k for k in sd}
    missing, extra = sorted(expected - have), sorted(have - expected)
    if missing or extra:
        raise ModelLoadError(f"{src}: the converted weights do not fit LlavaForConditionalGeneration "
                             f"(missing {missing[:5]}, unexpected {extra[:5]})")


def _write(out: Path, sd: dict, config, processor, src: Path, vision_dir: Path) -> None:
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    split = split_torch_state_dict_into_shards(sd, filename_pattern="model{suffix}.safetensors", max_shard_size="5GB")
    for name, keys in split.filename_to_tensors.items():
        save_file({k: sd[k] for k in keys}, str(out / name), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {}, "weight_map": split.tensor_to_filename}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(out)
    tok = processor.tokenizer
    gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if (src / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(src)
        gen.pad_token_id = tok.pad_token_id
    gen.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "CONVERTED_FROM.json").write_text(json.dumps(
        {"source": str(src.resolve()), "vision_tower": str(vision_dir.resolve()),
         "converter": "halbench.models.convert (original LLaVA -> llava-hf)"}, indent=2) + "\n")


def convert_original_llava(src: str | Path, out: str | Path, vision_tower: str | Path | None = None,
                           overwrite: bool = False, *, cached: bool = False) -> Path:
    """Convert SRC (original LLaVA layout) into OUT (llava-hf layout); OUT appears only when complete.
    `cached`: OUT is a cache entry (keyed by content): keep it if another process completes it first."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not is_original_llava(src):
        raise ModelLoadError(f"{src}: not an original-LLaVA checkpoint (config.json has no LlavaLlamaForCausalLM "
                             "architecture / mm_vision_tower)")
    if out.exists() and any(out.iterdir()) and not (overwrite or cached):
        raise HalbenchError(f"{out} already exists and is not empty (pass --overwrite to replace it)")
    cfg = read_config(src)
    check_supported(src, cfg)
    vision_dir = resolve_vision_tower(src, cfg, vision_tower)
    sd, config, processor = _assemble(src, vision_dir, cfg)
    tmp = staging_dir(out)
    try:
        _write(tmp, sd, config, processor, src, vision_dir)
        publish(tmp, out, "CONVERTED_FROM.json" if cached else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def staging_dir(out: Path) -> Path:
    """A fresh sibling directory to build `out` in (so `out` never holds a half-written checkpoint)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path, marker: str | None) -> None:
    """Move the finished `tmp` to `out`. With a `marker`, an `out` that another process completed meanwhile
    (same cache key = same contents) is kept and `tmp` dropped, so a reader of `out` is never disturbed."""
    if marker and (out / marker).is_file():
        return
    if out.exists():
        shutil.rmtree(out)
    try:
        tmp.replace(out)
    except OSError:
        if not (marker and (out / marker).is_file()):
            raise


def cache_root() -> Path:
    root = os.environ.get("HALBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "halbench")
    return Path(root)


def converted_checkpoint(src: str | Path, vision_tower: str | Path | None = None) -> Path:
    """`--model SRC` on an original-LLaVA dir: convert once into the user cache (keyed by the contents of SRC
    and of the vision tower) and return the converted dir."""
    from halbench.models.hf import dir_fingerprint

    src = Path(src).expanduser()
    cfg = read_config(src)
    check_supported(src, cfg)
    vision_dir = resolve_vision_tower(src, cfg, vision_tower)
    key = hashlib.sha256(f"{dir_fingerprint(src)}|{dir_fingerprint(vision_dir)}".encode()).hexdigest()[:16]
    out = cache_root() / "converted" / f"{src.name}-{key}"
    if not (out / "CONVERTED_FROM.json").is_file():
        print(f"halbench: converting original-LLaVA checkpoint {src} -> {out} (once)", file=sys.stderr, flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_original_llava(src, out, vision_dir, cached=True)
    return out


def _click_command():
    import click

    @click.command("convert")
    @click.argument("src", type=click.Path(exists=True, file_okay=False))
    @click.argument("out", type=click.Path(file_okay=False))
    @click.option("--vision-tower", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Original LLaVA (or a LoRA adapter over one): local dir of the CLIP tower named by "
                       "mm_vision_tower in SRC/config.json "
                       "(its weights are not inside such checkpoints). Default: mm_vision_tower if it is a local "
                       "dir or in the Hugging Face cache.")
    @click.option("--base-model", type=click.Path(exists=True, file_okay=False), default=None,
                  help="LoRA adapter SRC: the base checkpoint dir (default: adapter_config.json's "
                       "base_model_name_or_path).")
    @click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
    def convert(src, out, vision_tower, base_model, overwrite) -> None:
        """Turn a checkpoint as researchers publish it into an ordinary transformers one: an original-LLaVA dir
        (haotian-liu/LLaVA layout: LlavaLlamaForCausalLM + mm_projector) -> the llava-hf layout, or a peft LoRA
        adapter dir -> its base with the adapter merged. OUT loads with AutoModelForImageTextToText."""
        from halbench.models.lora import is_lora_adapter, merge_lora

        if is_lora_adapter(src):
            if Path(out).exists() and any(Path(out).iterdir()) and not overwrite:
                raise HalbenchError(f"{out} already exists and is not empty (pass --overwrite to replace it)")
            path = merge_lora(src, out, base_model, vision_tower=vision_tower)
        else:
            if base_model is not None:
                raise HalbenchError(f"--base-model given but {src} is not a LoRA adapter (no adapter_config.json)")
            path = convert_original_llava(src, out, vision_tower=vision_tower, overwrite=overwrite)
        click.echo(f"converted: {path}")

    return convert


#: `halbench convert` (registered in halbench.cli._register_plugin_commands).
convert = _click_command()
