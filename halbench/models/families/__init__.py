"""Family adapters: what differs between VLM families, one small module each (see base.py for the hooks).

`family_for(model_type)` returns the adapter serving a config.json `model_type`; unknown image-text-to-text
types get the generic adapter (AutoProcessor + chat template + flat image list + 1-D positions). Adding a
family = one module here with a `FAMILY` instance, one line in `_MODULES`, one row in tests/test_families.py.
"""

from __future__ import annotations

import importlib

from halbench.models.families.base import Family

#: model_type -> module (under halbench.models.families) whose FAMILY serves it
_MODULES = {
    "llava": "llava", "llava_next": "llava",
    "llava_onevision": "llava_onevision",
    "qwen2_vl": "qwen_vl", "qwen2_5_vl": "qwen_vl", "qwen3_vl": "qwen_vl", "qwen3_vl_moe": "qwen_vl",
    "glm4v": "qwen_vl",
    "instructblip": "instructblip",
    "gemma3": "gemma3",
    "idefics3": "idefics3", "smolvlm": "idefics3",
    "internvl": "internvl",
    "mistral3": "mistral3",
}


def family_for(model_type: str) -> Family:
    """The adapter for `model_type` (a fresh instance; adapters hold no per-model state)."""
    module = _MODULES.get(model_type)
    if module is None:
        return Family()
    mod = importlib.import_module(f"halbench.models.families.{module}")
    return mod.family(model_type)


def known_model_types() -> list[str]:
    return sorted(_MODULES)


__all__ = ["Family", "family_for", "known_model_types"]
