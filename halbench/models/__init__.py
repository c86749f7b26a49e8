"""Model backends: local Hugging Face VLMs and OpenAI-compatible HTTP servers.

`load_model(spec)` understands:
- None                      -> the embedded world's tiny VLM (`halbench.world.default_world().vlm_dir`)
- "hf:DIR" or a plain path  -> HFModel(DIR); a peft LoRA adapter dir is merged into its base first and an
                               original-LLaVA (haotian-liu) dir converted first (halbench.models.lora / .convert)
- "openai:MODEL@URL"        -> OpenAIModel(MODEL, URL)
- "NAME:ARG"                -> any backend registered under entry-point group `halbench.models` as NAME,
                               called as cls(ARG, **kw) (third-party backends)
Backends are imported lazily so `import halbench.models` stays cheap (no torch import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from halbench.errors import HalbenchError, NotAvailableError
from halbench.models.base import Model

__all__ = ["Model", "load_model", "parse_model_spec", "HFModel", "OpenAIModel"]


def parse_model_spec(spec: str | None) -> tuple[str, str | None]:
    """-> (backend, argument): (\"world\", None), (\"hf\", DIR), (\"openai\", \"MODEL@URL\"), (NAME, ARG)."""
    if spec is None or not str(spec).strip():
        return "world", None
    spec = str(spec).strip()
    prefix, sep, rest = spec.partition(":")
    # a bare path (including Windows "C:\\..." and paths with colons that exist) is an HF directory
    if not sep or Path(spec).exists() or (len(prefix) == 1 and rest.startswith(("\\", "/"))):
        return "hf", spec
    if not rest:
        raise HalbenchError(f"model spec {spec!r} has nothing after {prefix + ':'!r}")
    return prefix, rest


def load_model(spec: str | None = None, **kw: Any) -> Model:
    """Build the Model a --model spec names (see module docstring); keyword args go to the backend."""
    backend, arg = parse_model_spec(spec)
    if backend in ("world", "hf"):
        from halbench.models.hf import HFModel as hf_cls
        from halbench.models.lora import prepare_checkpoint

        # a LoRA adapter dir is merged into its base, an original-LLaVA dir converted (both cached once)
        path = prepare_checkpoint(_world_vlm_dir() if backend == "world" else arg, kw.pop("base_model", None))
        return hf_cls(path, **kw)
    if backend == "openai":
        from halbench.models.openai import OpenAIModel as cls, split_spec

        model, url = split_spec(arg)
        return cls(model, url, **kw)
    from halbench import registry

    try:
        cls = registry.load("model", backend)
    except HalbenchError as e:
        raise HalbenchError(f"model spec {spec!r}: unknown backend {backend!r} and no such path ({e})") from e
    return cls(arg, **kw)


def _world_vlm_dir() -> Path:
    try:
        from halbench.world import default_world
    except ImportError as e:
        raise NotAvailableError(
            f"no --model given and the embedded default world is not available ({e}); "
            "pass --model DIR (an HF checkpoint) or --model openai:MODEL@URL"
        ) from e
    vlm_dir = Path(default_world().vlm_dir)
    if not (vlm_dir / "config.json").is_file():
        raise NotAvailableError(
            f"the embedded default VLM is missing ({vlm_dir} has no config.json); rebuild the world or pass --model"
        )
    return vlm_dir


def __getattr__(name: str):  # lazy: HFModel pulls in torch + transformers
    if name == "HFModel":
        from halbench.models.hf import HFModel

        return HFModel
    if name == "OpenAIModel":
        from halbench.models.openai import OpenAIModel

        return OpenAIModel
    raise AttributeError(name)

