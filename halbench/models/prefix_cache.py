"""Exact reuse of image embeddings and prompt prefixes for greedy generation (LLaVA-family HF models).

Why: POPE asks several questions about each image (3 splits x ~2-6 questions per COCO image), and every request
`USER: <image>\\n{question} ASSISTANT:` begins with the same tokens up to and including the image's 576
placeholder tokens (LLaVA-1.5-336). A causal LM's keys/values at a position depend only on the tokens before it,
so the KV cache of that shared prefix (and the vision tower's output) is the same for every question on the
image: compute it once, then prefill only each question's suffix (~15 tokens instead of ~600).

Exactness: the tokens are the ones the processor produces for the full prompt, and the shared prefix ends at the
image's last placeholder token (a special token, so no BPE merge crosses the boundary); rows share a prefix only
when their prefix tokens are identical; the suffix sees exactly the prefix keys/values it would have computed
itself. Only floating-point summation order differs (different
matmul shapes), as it already does between batch sizes; benchmarks/bench_prefix_reuse.py asserts identical
greedy text against HFModel.generate.

How it runs, per chunk of up to `batch_size` requests (sorted so questions on one image are adjacent):
1. `ImageFeatureCache`: the projected image features (vision tower + projector, `get_image_features`) per image
   file, computed once and kept (LRU) across calls; passed to the model as `mm_encoder_outputs` (transformers'
   own hook for pre-encoded images, >= 5.x).
2. One prefill per distinct (image, prefix tokens up to the last image token) -> a DynamicCache (batch 1, P_g).
3. The chunk's cache: each row gets its prefix's KV, left-padded with zeros to the longest prefix (masked out);
   input_ids/attention_mask are [pad][prefix][pad][suffix], so `generate()` derives position ids from the mask
   (cumsum - 1) and the suffix tokens get positions P_g.. as in the unshared prompt.
4. `model.generate(past_key_values=cache, ...)` prefills the suffixes only and decodes greedily.

Scope: greedy decoding (do_sample=False, num_beams=1) of LLaVA / LLaVA-NeXT checkpoints (1-D RoPE, features
in `mm_encoder_outputs`); everything else goes to the wrapped model's own generate(). Sampling would be exact
too, but the per-chunk RNG seeding of HFModel depends on chunk membership, which reordering changes.

Using it from the HF backend (halbench/models/hf.py is not owned here): in `HFModel.generate`, route requests
with `PrefixCachedGenerator.supports(request)` through a `PrefixCachedGenerator(self)` built once in __init__
(behind an option such as `prefix_cache=True`), keep the rest on `_generate_chunk`. The evaluator needs no
change; POPE benefits most when a batch holds several questions per image, i.e. the task yields its samples
grouped by image or the evaluator hands the model a whole task's requests at once.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from halbench.images import load_image
from halbench.schema import Request, Response

#: model_types whose image features can be passed pre-encoded and whose positions are 1-D (mask cumsum).
SUPPORTED_TYPES = {"llava", "llava_next"}


class ImageFeatureCache:
    """Projected image features per image file (LRU over `max_items`), keyed on path + size + mtime."""

    def __init__(self, model, processor, max_items: int = 256):
        self.model, self.processor, self.max_items = model, processor, max_items
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = self.misses = 0

    def _key(self, path: str) -> tuple:
        st = Path(path).stat()
        return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)

    def get(self, path: str, pixel_inputs: dict[str, Any]):
        """`get_image_features(**pixel_inputs)` for this image, computed on the first request only."""
        import torch

        key = self._key(path)
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        with torch.no_grad():
            feats = self.model.get_image_features(**pixel_inputs, return_dict=True)
        self._items[key] = feats
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return feats


class PrefixCachedGenerator:
    """Greedy generation that shares the image prefix's KV cache between requests on the same image.

    `hf` is an HFModel (anything with .model, .processor, .tokenizer, .model_type, .device, .render_prompt,
    .generate). Counters in `stats`: prompt tokens a no-reuse run would prefill vs tokens prefilled here.
    """

    def __init__(self, hf, batch_size: int | None = None, image_cache: ImageFeatureCache | None = None):
        self.hf = hf
        self.batch_size = batch_size or getattr(hf, "batch_size", 8)
        self.images = image_cache or ImageFeatureCache(hf.model, hf.processor)
        self.image_token_id = hf.model.config.image_token_id
        self.stats = {"prompt_tokens": 0, "prefilled_tokens": 0, "prefixes": 0}

    def supports(self, request: Request) -> bool:
        g = request.generation
        return (request.image is not None and not g.do_sample and g.num_beams == 1
                and self.hf.model_type in SUPPORTED_TYPES)

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        other = [i for i, r in enumerate(requests) if not self.supports(r)]
        plain = getattr(self.hf, "generate_plain", self.hf.generate)  # never back into this cache
        for i, resp in zip(other, plain([requests[i] for i in other]) if other else []):
            out[i] = resp
        mine = sorted((i for i, r in enumerate(requests) if self.supports(r)),
                      key=lambda i: (repr(requests[i].generation), requests[i].image, requests[i].system or ""))
        prefixes: dict[tuple, Any] = {}
        for chunk in self._chunks(mine, requests):
            for i, resp in zip(chunk, self._generate_chunk([requests[i] for i in chunk], prefixes)):
                out[i] = resp
        return out  # type: ignore[return-value]

    def _chunks(self, order: list[int], requests: list[Request]) -> list[list[int]]:
        chunks: list[list[int]] = []
        for i in order:  # same generation settings within a chunk (they are sorted first by them)
            if chunks and len(chunks[-1]) < self.batch_size and \
                    requests[chunks[-1][0]].generation == requests[i].generation:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        return chunks

    # -- tokens ---------------------------------------------------------------------------------------------
    def _token_ids(self, request: Request, images: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
        """input_ids exactly as the processor makes them for this prompt + image, and the pixel inputs.

        The processor runs (image preprocessing included) once per image; later prompts on the image are
        tokenized as text and their one image token expanded to the image's token count, which is what the
        processor does (`<image>` is a special token, so the text around it tokenizes the same). The first
        prompt per image checks that equivalence."""
        import torch

        text = self.hf.render_prompt(request)
        bos = self.hf.tokenizer.bos_token
        add_special = not (bos and text.startswith(bos))
        ids = self.hf.tokenizer(text, add_special_tokens=add_special)["input_ids"]
        if request.image not in images:
            enc = self.hf.processor(text=[text], images=[load_image(request.image)], return_tensors="pt",
                                    add_special_tokens=add_special)
            pixel = {k: v.to(self.hf.device) for k, v in enc.items()
                     if isinstance(v, torch.Tensor) and k not in ("input_ids", "attention_mask")}
            pixel["pixel_values"] = pixel["pixel_values"].to(self.hf.model.dtype)
            full = enc["input_ids"][0].tolist()
            images[request.image] = (full.count(self.image_token_id), pixel)
            if self._expand(ids, images[request.image][0]) != full:
                raise RuntimeError(f"request {request.id}: cannot reproduce the processor's image-token expansion")
        n_image, pixel = images[request.image]
        return self._expand(ids, n_image), pixel

    def _expand(self, ids: list[int], n_image: int) -> list[int]:
        if ids.count(self.image_token_id) != 1:
            raise RuntimeError("prefix reuse needs exactly one image placeholder per prompt")
        k = ids.index(self.image_token_id)
        return ids[:k] + [self.image_token_id] * n_image + ids[k + 1:]

    # -- one chunk ------------------------------------------------------------------------------------------
    def _prefix(self, image_path: str, ids: list[int], pixel: dict[str, Any], prefixes: dict) -> tuple:
        """(prefix ids, batch-1 DynamicCache) of `ids` up to and including its last image token; one prefill
        per distinct (image, prefix tokens) per generate() call."""
        import torch

        image_pos = [k for k, t in enumerate(ids) if t == self.image_token_id]
        if not image_pos or image_pos[-1] + 1 >= len(ids):
            raise RuntimeError("prompt has no image token, or nothing after it to prefill")
        prefix = ids[:image_pos[-1] + 1]
        key = (image_path, tuple(prefix))
        if key not in prefixes:
            feats = self.images.get(image_path, pixel)
            with torch.no_grad():
                out = self.hf.model(input_ids=torch.tensor([prefix], device=self.hf.device),
                                    mm_encoder_outputs={"image": feats}, use_cache=True)
            prefixes[key] = (prefix, out.past_key_values)
            self.stats["prefilled_tokens"] += len(prefix)
            self.stats["prefixes"] += 1
        return prefixes[key]

    def _generate_chunk(self, reqs: list[Request], prefixes: dict) -> list[Response]:
        rows, row_prefix = [], []
        images: dict[str, Any] = {}
        for r in reqs:
            ids, pixel = self._token_ids(r, images)
            prefix = self._prefix(r.image, ids, pixel, prefixes)
            rows.append(ids)
            row_prefix.append(prefix)
            self.stats["prompt_tokens"] += len(ids)
            self.stats["prefilled_tokens"] += len(ids) - len(prefix[0])
        return self._decode_batch(reqs, rows, row_prefix)

    def _batch_cache(self, row_prefix: list[tuple], p_max: int):
        """A DynamicCache whose row b holds row b's prefix KV, left-padded with zeros to p_max (masked)."""
        import torch
        from transformers import DynamicCache

        caches = [pc for _, pc in row_prefix]
        cache = DynamicCache()
        for layer in range(len(caches[0].layers)):
            ks, vs = [], []
            for pc in caches:
                k, v = pc.layers[layer].keys, pc.layers[layer].values
                pad = p_max - k.shape[2]
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            cache.update(torch.cat(ks), torch.cat(vs), layer)
        return cache

    def _decode_batch(self, reqs: list[Request], rows: list[list[int]], row_prefix: list[tuple]) -> list[Response]:
        import torch

        pad_id = self.hf.tokenizer.pad_token_id
        p_max = max(len(p) for p, _ in row_prefix)
        s_max = max(len(r) - len(p) for r, (p, _) in zip(rows, row_prefix))
        ids = torch.full((len(rows), p_max + s_max), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, (r, (p, _)) in enumerate(zip(rows, row_prefix)):
            suffix = r[len(p):]
            ids[b, p_max - len(p):p_max] = torch.tensor(p)
            mask[b, p_max - len(p):p_max] = 1
            ids[b, p_max + s_max - len(suffix):] = torch.tensor(suffix)
            mask[b, p_max + s_max - len(suffix):] = 1
        cache = self._batch_cache(row_prefix, p_max)  # new tensors: the shared prefixes stay untouched
        with torch.no_grad():
            out = self.hf.model.generate(input_ids=ids.to(self.hf.device), attention_mask=mask.to(self.hf.device),
                                         past_key_values=cache, **self.hf._gen_kwargs(reqs[0].generation))
        new = out[:, ids.shape[1]:].tolist()
        return [self.hf._decode(row, len(r)) for row, r in zip(new, rows)]
