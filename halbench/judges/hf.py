"""A judge that runs a local Hugging Face checkpoint: any causal LM dir, or a VLM dir (image-aware judge).

Spec: `hf:DIR` (or a plain directory). A VLM dir loads through halbench.models.hf.HFModel, a text-only causal
LM through halbench.judges.hf_text.TextLM (greedy decoding, batching, chat templates in both); this module
only decides whether the judge sees the image: a text-only checkpoint
never does, a VLM does when `image=True` (the MMHal-V idea from the BDHS study: a judge that looks at the
picture instead of trusting a list of labels). The judge id carries the weights' fingerprint, so a retrained
checkpoint in the same directory never reuses the old verdicts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from halbench.errors import JudgeError
from halbench.schema import Request, Response
from halbench.judges.base import Judge


def is_vlm_dir(path: Path) -> bool:
    """A checkpoint whose config has a vision tower (LLaVA, Qwen2-VL, ... all carry `vision_config`)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise JudgeError(f"judge checkpoint {path}: cannot read config.json ({e})") from e
    return "vision_config" in cfg


class HFJudge(Judge):
    """`HFJudge("hf:DIR", image=False, device="cpu", batch_size=8, model=None)`."""

    backend = "hf"

    def __init__(self, spec: str, *, image: bool = False, device: str = "cpu", batch_size: int = 8,
                 trust_remote_code: bool = False, model=None, **kw):
        super().__init__(**kw)
        self.path = Path(spec[3:] if spec.startswith("hf:") else spec).expanduser()
        if model is None and not self.path.is_dir():
            raise JudgeError(f"judge checkpoint directory not found: {self.path}")
        self.vlm = is_vlm_dir(self.path) if model is None else "image" in getattr(model, "capabilities", ())
        if image and not self.vlm:
            raise JudgeError(f"judge_image=true needs a vision-language checkpoint; {self.path} is text-only")
        self.image = image
        self.capabilities = frozenset({"generate", "image"} if image else {"generate"})
        self.model = model or self._load(device, batch_size, trust_remote_code)
        self._fingerprint = self.model.fingerprint()

    def _load(self, device: str, batch_size: int, trust_remote_code: bool):
        if not self.vlm:
            from halbench.judges.hf_text import TextLM

            return TextLM(self.path, device=device, batch_size=batch_size, trust_remote_code=trust_remote_code)
        try:
            from halbench.models.hf import HFModel
        except ImportError as e:
            raise JudgeError(f"the local VLM judge needs halbench.models.hf.HFModel ({e})") from e
        return HFModel(self.path, device=device, batch_size=batch_size, trust_remote_code=trust_remote_code)

    @property
    def judge_id(self) -> str:
        return f"hf:{self.path.name}@{self._fingerprint}" + ("+image" if self.image else "")

    def _complete(self, requests: list[Request]) -> list[Response]:
        if not self.image:  # a text judge judges from the prompt alone, like the reference GPT-4 judge
            requests = [dataclasses.replace(r, image=None) for r in requests]
        try:
            responses = self.model.generate(requests)
        except Exception as e:  # noqa: BLE001 -- one broken batch must fail its verdicts, not the run
            return [Response(text="", error=f"{type(e).__name__}: {e}") for _ in requests]
        out = []
        for resp in responses:
            usage = resp.usage or ({"completion_tokens": resp.n_generated_tokens}
                                   if resp.n_generated_tokens is not None else None)
            out.append(dataclasses.replace(resp, model_id=self.judge_id, usage=usage))
        return out
