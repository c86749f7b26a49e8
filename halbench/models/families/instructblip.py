"""InstructBLIP (the FiSAO paper's second backbone).

Card
- Mirrors: Salesforce/instructblip-vicuna-7b (InstructBlipForConditionalGeneration: EVA ViT-g tower, a
  Q-Former with 32 learned queries that also reads the instruction, Vicuna-7B LM; InstructBlipProcessor =
  BlipImageProcessor + the LM tokenizer + a BERT `qformer_tokenizer`). The LM input is
  `<image> x num_query_tokens` + BOS + the prompt; the query outputs replace the `<image>` embeddings.
- Prompt: the instruction as written, no chat template (the model card and LAVIS feed the question verbatim);
  a system text, if any, is prefixed with a space.
- Batching fix: the upstream processor prepends the query tokens to already left-padded text, so padding sits
  between the query tokens and the prompt and batched output differs from single (even in plain
  transformers). Here each row is built as query tokens + BOS + text and the whole row is left-padded, so
  padding never separates them; at batch 1 the ids are exactly the processor's. 1-D positions count real
  tokens, as for LLaVA.
- The Q-Former reads the prompt only (never the continuation), so DPO / loglikelihood score responses under
  the same query features generation used.
- BDHS: supported. The masked positions are the query-token (`<image>`) positions in the LM input.
- Refused: requests without an image (the architecture has no text-only path: generate() needs pixel_values),
  with a one-line error per request.
"""

from __future__ import annotations

from typing import Any

from halbench.errors import HalbenchError
from halbench.models.families.base import Family


class InstructBlipFamily(Family):
    __doc__ = __doc__
    name = "instructblip"
    model_types = ("instructblip",)
    mirrors = ("Salesforce/instructblip-vicuna-7b",)

    def load_processor(self, path, trust_remote_code: bool = False):
        proc = super().load_processor(path, trust_remote_code)
        # padding_side="left" reached the Q-Former's BERT tokenizer too; it has absolute positions: pad right
        proc.qformer_tokenizer.padding_side = "right"
        return proc

    def chat_template(self, hf: Any) -> str | None:
        return None

    def render_prompt(self, hf: Any, request: Any) -> str:
        return f"{request.system} {request.prompt}" if request.system else request.prompt

    def encode(self, hf: Any, texts: list[str], prompts: list[str], images: list, add_special: bool) -> dict:
        import torch
        from transformers import BatchFeature

        if any(im is None for im in images):
            raise HalbenchError("InstructBLIP needs an image with every request (its LM input starts with the "
                                "Q-Former's query tokens)")
        proc, tok, cfg = hf.processor, hf.tokenizer, hf.model.config
        # the model's own placeholder id and count (what InstructBlip.generate uses without input_ids), not the
        # tokenizer's: a tokenizer lacking "<image>" would get it appended at a new id by the processor
        query = [int(cfg.image_token_id)] * int(cfg.num_query_tokens)
        rows = [query + tok(t, add_special_tokens=add_special)["input_ids"] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding in front of the query tokens
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        qf = proc.qformer_tokenizer(prompts, padding=True, padding_side="right", return_tensors="pt")
        pixels = proc.image_processor(images, return_tensors="pt")["pixel_values"]
        return BatchFeature({"input_ids": ids, "attention_mask": mask, "qformer_input_ids": qf["input_ids"],
                             "qformer_attention_mask": qf["attention_mask"], "pixel_values": pixels})


def family(model_type: str) -> Family:
    return InstructBlipFamily()
