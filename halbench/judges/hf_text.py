"""A text-only causal LM for local judges (halbench.models.HFModel only loads vision-language checkpoints).

`TextLM(path, device, batch_size)` is a small Model: AutoTokenizer + AutoModelForCausalLM from a local dir
(safetensors only), the tokenizer's chat template when it has one (else "{system}\\n\\n{prompt}\\n"), greedy
decoding, left-padded batches. Weights are fingerprinted with halbench.models.hf.dir_fingerprint, so the
judge id changes when the checkpoint does.
"""

from __future__ import annotations

from pathlib import Path

from halbench.errors import ModelLoadError
from halbench.models.base import Model
from halbench.schema import Request, Response


class TextLM(Model):
    backend = "hf-text"
    capabilities = frozenset({"generate"})

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 8, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.model_id = str(self.path)
        self.device, self.batch_size = device, max(1, int(batch_size))
        if not any(self.path.glob("*.safetensors")):
            raise ModelLoadError(f"{self.path}: no *.safetensors weights (pickle .bin judges are not loaded)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left",
                                                           trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code
            ).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"{self.path}: cannot load a causal LM judge ({type(e).__name__}: {e})") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from halbench.models.hf import dir_fingerprint

            self._fingerprint = dir_fingerprint(self.path)
        return self._fingerprint

    def render(self, r: Request) -> str:
        if self.tokenizer.chat_template:
            msgs = ([{"role": "system", "content": r.system}] if r.system else []) + [
                {"role": "user", "content": r.prompt}]
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return (f"{r.system}\n\n" if r.system else "") + r.prompt + "\n"

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response] = []
        for start in range(0, len(requests), self.batch_size):
            out.extend(self._batch(requests[start:start + self.batch_size]))
        return out

    def _batch(self, batch: list[Request]) -> list[Response]:
        import torch

        texts = [self.render(r) for r in batch]
        bos = self.tokenizer.bos_token
        add_special = not (bos and texts[0].startswith(bos))  # a template that writes <s> itself
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(self.device)
        max_new = max(r.generation.max_new_tokens for r in batch)
        with torch.inference_mode():
            ids = self.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]
        n_prompt = enc["attention_mask"].sum(dim=1).tolist()
        out = []
        for row, r, n_in in zip(new, batch, n_prompt):
            row = row[: r.generation.max_new_tokens]
            keep = row[row != self.tokenizer.pad_token_id] if self.tokenizer.pad_token_id is not None else row
            text = self.tokenizer.decode(keep, skip_special_tokens=True).strip()
            out.append(Response(text=text, model_id=self.model_id, n_generated_tokens=len(keep),
                                usage={"prompt_tokens": int(n_in), "completion_tokens": len(keep)}))
        return out
