"""The family adapter interface, and the default behaviour every image-text-to-text family starts from.

A family adapter holds what differs between VLM families (halbench/models/hf.py keeps what is common):
- `load_processor`: the processor, left-padded, built without a video part where that part needs torchvision;
- `render_prompt`: the text given to the processor for one request (chat template, image placeholder);
- `processor_call` / `encode`: how images are passed (flat list, one list per sample) and how the batch is
  tokenised so every row ends at the last column;
- `position_ids`: explicit 1-D positions for teacher-forced forwards (None for M-RoPE families, whose
  forward computes 3-D positions from the attention mask);
- `image_token_mask` / `bdhs_refusal`: which LM positions carry image features (BDHS masks their attention);
- `save_processor`: write a processor that plain `AutoProcessor.from_pretrained(dir)` loads.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from halbench.errors import ModelLoadError

#: Fallback prompt format when neither processor nor tokenizer has a chat template (LLaVA-1.5 conversation).
PLAIN_TEMPLATE = "{system}USER: {image}{prompt} ASSISTANT:"


def read_chat_template(path: Path) -> str | None:
    f = path / "chat_template.jinja"
    if f.is_file():
        return f.read_text()
    f = path / "chat_template.json"
    return json.loads(f.read_text()).get("chat_template") if f.is_file() else None


def token_text(token: Any) -> str:
    """A special token as text (processors hold some as `tokenizers.AddedToken`)."""
    return getattr(token, "content", token)


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


class Family:
    """Default adapter: AutoProcessor, chat template, flat image list, 1-D positions, `<image>`-token masking."""

    name = "generic"
    #: model_type values in config.json this adapter serves
    model_types: tuple[str, ...] = ()
    #: published checkpoints the family's tiny test checkpoints mirror (for the card / README table)
    mirrors: tuple[str, ...] = ()
    #: the model's LM takes 3-D M-RoPE positions computed inside forward() (never pass 1-D positions)
    mrope = False
    #: pass images as one list per sample (processors that count placeholders per sample)
    nested_images = False
    #: public processor class that needs torchvision (a video part, or Pixtral's whole module): without
    #: torchvision it is built image-only (`image_only_processor`) and saved under this name
    torchvision_processor: str | None = None

    # -- loading --------------------------------------------------------------------------------------
    def load_processor(self, path: Path, trust_remote_code: bool = False):
        from transformers import AutoProcessor

        if self.torchvision_processor and not torchvision_available():
            proc = self.image_only_processor(path)
        else:
            try:
                proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, padding_side="left")
            except (ValueError, ImportError, AttributeError, TypeError, OSError) as e:
                if not self.torchvision_processor:
                    raise ModelLoadError(f"{path}: cannot load the processor ({type(e).__name__}: {e})") from e
                proc = self.image_only_processor(path)
        if not hasattr(proc, "tokenizer"):
            raise ModelLoadError(f"{path}: the processor ({type(proc).__name__}) has no tokenizer")
        proc.tokenizer.padding_side = "left"
        return proc

    def image_only_processor(self, path: Path):
        """The family's public processor class, built from the dir's parts without its video processor.

        ProcessorMixin derives its parts from __init__'s signature, so a subclass whose __init__ has no
        `video_processor` parameter skips the (torchvision-only) video processor; it keeps the public class
        name, so what `save_pretrained` writes names the public class."""
        import transformers
        from transformers import AutoImageProcessor, AutoTokenizer

        cls = getattr(transformers, self.torchvision_processor)
        sub = type(cls.__name__, (cls,), {"__init__": _init_without_video(cls), "__module__": cls.__module__,
                                          "_halbench_image_only": True})
        try:
            tok = AutoTokenizer.from_pretrained(path, padding_side="left")
            image_processor = AutoImageProcessor.from_pretrained(path)
        except (OSError, ValueError, TypeError) as e:
            raise ModelLoadError(f"{path}: cannot load the tokenizer / image processor ({e})") from e
        kwargs = _processor_kwargs(path, cls)
        template = read_chat_template(path) or tok.chat_template
        try:
            proc = sub(image_processor=image_processor, tokenizer=tok, chat_template=template, **kwargs)
        except ImportError as e:  # e.g. SmolVLM's processor needs num2words
            raise ModelLoadError(f"{path}: cannot build the {cls.__name__} ({e})") from e
        proc._halbench_source = Path(path)  # its video settings are copied on save (see save_processor)
        return proc

    # -- prompts --------------------------------------------------------------------------------------
    def chat_template(self, hf: Any) -> str | None:
        return getattr(hf.processor, "chat_template", None) or hf.tokenizer.chat_template

    def render_prompt(self, hf: Any, request: Any) -> str:
        """Chat-template rendering with the image part first, else the LLaVA-1.5 plain format."""
        if not self.chat_template(hf):
            image_token = token_text(getattr(hf.processor, "image_token", None) or "<image>")
            image = image_token + "\n" if request.image else ""
            system = request.system + " " if request.system else ""
            return PLAIN_TEMPLATE.format(system=system, image=image, prompt=request.prompt)
        content = ([{"type": "image"}] if request.image else []) + [{"type": "text", "text": request.prompt}]
        messages = [{"role": "user", "content": content}]
        if request.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": request.system}]})
        if getattr(hf.processor, "_halbench_image_only", False):  # its apply_chat_template may read video settings
            return hf.tokenizer.apply_chat_template(messages, chat_template=self.chat_template(hf),
                                                    add_generation_prompt=True, tokenize=False)
        return hf.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    # -- inputs ---------------------------------------------------------------------------------------
    def images_arg(self, images: list) -> Any:
        if self.nested_images:
            return [[im] if im is not None else [] for im in images] if any(im is not None for im in images) else None
        return [im for im in images if im is not None] or None

    def encode(self, hf: Any, texts: list[str], prompts: list[str], images: list, add_special: bool) -> dict:
        """Left-padded processor output for full texts (`prompts[i]` is text i without its continuation)."""
        return hf.processor(text=texts, images=self.images_arg(images), return_tensors="pt", padding=True,
                            add_special_tokens=add_special)

    def position_ids(self, model: Any, inputs: dict[str, Any]):
        """Positions of the unpadded tokens (1-D RoPE); None lets an M-RoPE model compute its own."""
        if self.mrope:
            return None
        mask = inputs["attention_mask"]
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    # -- BDHS image-attention masking -----------------------------------------------------------------
    def bdhs_refusal(self, model: Any) -> str | None:
        """Why image-attention masking cannot work for this model (None: it can)."""
        return None if _image_token_id(model) is not None else (
            f"{type(model).__name__} has no image token id in its config: cannot locate image positions")

    def image_token_mask(self, model: Any, inputs: dict[str, Any]):
        """Bool [B, T]: the LM positions that hold image features."""
        return inputs["input_ids"] == _image_token_id(model)

    def generation_position_ids(self, model: Any, inputs: dict[str, Any]):
        """The positions generate() would derive from the *unmasked* inputs, passed explicitly when the
        attention mask is edited (the model's own `_prepare_position_ids_for_generation`, so M-RoPE
        families get their [4, B, T] text + 3-D positions)."""
        kw = {k: v for k, v in inputs.items() if k not in ("labels", "position_ids")}
        return model._prepare_position_ids_for_generation(kw["input_ids"], kw)

    # -- saving ---------------------------------------------------------------------------------------
    def save_processor(self, processor: Any, out: Path) -> None:
        """processor.save_pretrained, and processor_config.json names a class transformers exports (the
        image-only processor keeps its public class name; a private name, such as the
        `Qwen2VLProcessorNoVideo` older halbench versions wrote, is replaced by the public one). An image-only
        processor also leaves the video part loadable where torchvision exists: the source's video settings
        are carried over, and preprocessor_config.json (the video processor's fallback) is written."""
        import transformers

        processor.save_pretrained(out)
        cfg_file = Path(out) / "processor_config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        name = cfg.get("processor_class")
        if name is None or not hasattr(transformers, name):
            public = [c.__name__ for c in type(processor).__mro__ if hasattr(transformers, c.__name__)
                      and c.__name__.endswith("Processor")]
            cfg["processor_class"] = self.torchvision_processor or public[0]
        if getattr(processor, "_halbench_image_only", False):
            processor.image_processor.save_pretrained(out)
            cfg.update(_video_settings(getattr(processor, "_halbench_source", None), out))
        cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    def card(self) -> str:
        return inspect.getdoc(type(self)) or ""


def _init_without_video(cls: type):
    """cls.__init__ with video_processor=None, and cls's signature minus `video_processor`: ProcessorMixin
    reads the signature for its parts (so the None video part is never checked or stored) and for the init
    fields it saves (num_image_tokens, image_seq_len, ...)."""
    sig = inspect.signature(cls.__init__)

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        kwargs.pop("video_processor", None)
        cls.__init__(self, image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **kwargs)

    __init__.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "video_processor"])
    return __init__


def _video_settings(source: Path | None, out: Path) -> dict[str, Any]:
    """The source dir's video-processor settings: nested in processor_config.json (returned, to nest again)
    or video_preprocessor_config.json (copied)."""
    import shutil

    if source is None:
        return {}
    video_file = source / "video_preprocessor_config.json"
    if video_file.is_file() and video_file.resolve() != (Path(out) / video_file.name).resolve():
        shutil.copyfile(video_file, Path(out) / video_file.name)
    proc_file = source / "processor_config.json"
    try:
        nested = json.loads(proc_file.read_text()).get("video_processor") if proc_file.is_file() else None
    except json.JSONDecodeError:
        nested = None
    return {"video_processor": nested} if isinstance(nested, dict) else {}


def _processor_kwargs(path: Path, cls: type) -> dict[str, Any]:
    """Scalar init arguments of `cls` saved in processor_config.json (num_image_tokens, image_seq_len...)."""
    f = path / "processor_config.json"
    try:
        saved = json.loads(f.read_text()) if f.is_file() else {}
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{f}: invalid JSON ({e})") from e
    params = set(inspect.signature(cls.__init__).parameters) - {
        "self", "image_processor", "tokenizer", "video_processor", "chat_template", "kwargs"}
    return {k: v for k, v in saved.items() if k in params}


def _image_token_id(model: Any) -> int | None:
    cfg = getattr(model, "config", model)
    for name in ("image_token_id", "image_token_index"):
        tid = getattr(cfg, name, None)
        if tid is not None:
            return int(tid)
    return None
