"""Local Hugging Face vision-language models (every family in halbench/models/families, any image-text-to-text model).

What differs between families (processor loading without torchvision, prompt rendering, how images are passed,
1-D vs M-RoPE positions, image positions for BDHS masking, saving a public processor) lives in one adapter per
family, `halbench.models.families.family_for(model_type)`; this module keeps what is common.

Loading: `AutoProcessor` + `AutoModelForImageTextToText` from a local directory, safetensors only unless the
caller passes `allow_pickle=True` for a directory that holds only `.bin` weights (pickles run code on load).

Prompting (default adapter): the processor's chat template when it has one, else the documented LLaVA-1.5 plain
format `[system ]USER: <image>\\n{prompt} ASSISTANT:` (PLAIN_TEMPLATE). The image part is emitted only for
requests that carry an image.

Batching: requests are left-padded so every row ends at the last column; generate() gets the attention mask
and derives position ids from it (M-RoPE models derive their 3-D positions from the mask themselves), and
`build_inputs` adds 1-D `position_ids` for teacher-forced forwards, so a batch of 8 gives the same greedy text
as 8 batches of 1 (tests/test_families.py checks it for every family with prompts of different lengths).

Continuations (loglikelihood, DPO log-probs): the continuation is appended to the rendered prompt, after one
space when the prompt ends in a non-space character and the continuation starts with one (the model generated
" The cat" after "ASSISTANT:", and generate() returns it stripped). Its tokens are the ones after the longest
common prefix of tokenize(prompt) and tokenize(prompt + continuation), so a token merged across the boundary
counts as continuation.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from halbench.errors import HalbenchError, ModelLoadError
from halbench.images import load_image
from halbench.schema import GenerationSettings, Request, Response
from halbench.models.base import Model
from halbench.models.families import Family, family_for
from halbench.models.families.base import PLAIN_TEMPLATE  # noqa: F401 - re-exported (documented above)

#: Files whose bytes determine the model's outputs; all of them go into the fingerprint.
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".tiktoken")


# -- loading ------------------------------------------------------------------------------------------------
def _check_model_dir(path: Path, allow_pickle: bool) -> tuple[dict, bool]:
    """Validate a checkpoint dir; return (config dict, use_safetensors). ModelLoadError names what's wrong."""
    if not path.exists():
        raise ModelLoadError(f"{path}: model directory not found")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: expected a Hugging Face model directory, found a file")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
        raise ModelLoadError(f"{path}: no config.json, so this is not a Hugging Face checkpoint (found: {found})")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{cfg_file}: invalid JSON ({e})") from e
    has_st = any(path.glob("*.safetensors"))
    has_bin = any(path.glob("*.bin"))
    if not has_st and has_bin and not allow_pickle:
        raise ModelLoadError(
            f"{path}: only pickle (.bin) weights found; pass allow_pickle=True to load them "
            "(pickles can run arbitrary code) or convert the checkpoint to safetensors"
        )
    if not has_st and not has_bin:
        raise ModelLoadError(f"{path}: no weight files (*.safetensors or *.bin) found")
    return cfg, has_st


def _check_vlm(path: Path, cfg: dict, trust_remote_code: bool) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as VLMS

    model_type = cfg.get("model_type", "?")
    if model_type in VLMS or (trust_remote_code and "vision_config" in cfg):
        return
    archs = ", ".join(cfg.get("architectures") or []) or "no architectures listed"
    raise ModelLoadError(
        f"{path}: config.json describes a {model_type!r} model ({archs}), not a vision-language model; "
        "the hf backend needs an image-text-to-text checkpoint such as llava, llava_next or qwen2_vl"
    )


def load_processor(path: Path, model_type: str, trust_remote_code: bool = False):
    """The family adapter's processor: left padding, image-only where the video part needs torchvision."""
    return family_for(model_type).load_processor(Path(path), trust_remote_code)


# -- fingerprint --------------------------------------------------------------------------------------------
def _cache_file() -> Path:
    root = os.environ.get("HALBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "halbench")
    return Path(root) / "file_hashes.json"


def _file_sha256(path: Path, memo: dict[str, Any]) -> str:
    """sha256 of a file, memoised on (resolved path, size, mtime_ns) so re-fingerprinting is a stat()."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo[key] = h.hexdigest()
    return memo[key]


def dir_fingerprint(path: str | Path) -> str:
    """First 16 hex of sha256 over (name, content sha256) of every weight/config/tokenizer file in `path`."""
    path = Path(path)
    cache = _cache_file()
    try:
        memo = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    n_before = len(memo)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_FINGERPRINT_SUFFIXES)):
        h.update(f"{f.name}\0{_file_sha256(f, memo)}\n".encode())
    if len(memo) != n_before:  # best effort: an unwritable cache only costs re-hashing next time
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(cache)
        except OSError:
            pass
    return h.hexdigest()[:16]


# -- tensors ------------------------------------------------------------------------------------------------
def gather_logprobs(logits, labels):
    """Per-token log p(label) for a causal LM. logits (B, T, V), labels (B, T) with -100 = ignore.

    Returns (logps, mask), both (B, T-1): position t scores token t+1 given tokens <= t. Sum logps*mask over
    the last dim for a sequence log-probability (DPO).
    """
    import torch

    targets = labels[:, 1:]
    mask = targets != -100
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = torch.gather(logps, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# -- the model ----------------------------------------------------------------------------------------------
class HFModel(Model):
    """A local HF image-text-to-text checkpoint. See the module docstring for prompting and batching rules."""

    backend = "hf"

    def __init__(self, path: str | Path, device: str = "cpu", dtype: Any = None, batch_size: int = 8,
                 trust_remote_code: bool = False, attn_implementation: str | None = None,
                 allow_pickle: bool = False, seed: int = 0, progress: bool = False,
                 prefix_cache: bool = False):
        import torch
        from transformers import AutoModelForImageTextToText

        self.path = Path(path).expanduser()
        cfg, use_safetensors = _check_model_dir(self.path, allow_pickle)
        _check_vlm(self.path, cfg, trust_remote_code)
        self.model_type = cfg.get("model_type", "")
        self.model_id = str(self.path)
        self.device, self.batch_size, self.seed, self.progress = device, max(1, int(batch_size)), seed, progress
        self.family: Family = family_for(self.model_type)
        self.processor = self.family.load_processor(self.path, trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        if self.tokenizer.pad_token_id is None:  # e.g. Llama tokenizers: pad with eos, masked out anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if isinstance(dtype, str) and dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ModelLoadError(f"{self.path}: unknown dtype {dtype!r} (use float32, bfloat16, float16 or auto)")
            dtype = getattr(torch, dtype)
        kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(
                self.path, dtype=dtype or torch.float32, use_safetensors=use_safetensors,
                trust_remote_code=trust_remote_code, **kw).to(device).eval()
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{self.path}: cannot load weights ({type(e).__name__}: {e})") from e
        self.capabilities = frozenset({"generate", "logprobs", "image"})
        self._fingerprint: str | None = None
        self.batch_fallbacks = 0  # batches re-run one request at a time (warned once, in results.json)
        # Exact reuse of image features + the shared image prefix's KV cache for greedy LLaVA requests
        # (benchmarks/bench_prefix_reuse.py asserts identical text); off unless asked for.
        self._prefix = None
        if prefix_cache:
            from halbench.models.prefix_cache import PrefixCachedGenerator

            self._prefix = PrefixCachedGenerator(self)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = dir_fingerprint(self.path)
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "model_type": self.model_type, "dtype": str(self.model.dtype),
                "device": str(self.device), "batch_size": self.batch_size,
                "prefix_cache": self._prefix is not None, "family": self.family.name,
                "batch_fallbacks": self.batch_fallbacks}

    # -- prompts ----------------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str | None:
        return self.family.chat_template(self)

    def render_prompt(self, request: Request) -> str:
        """The exact text given to the processor for `request` (before image-token expansion)."""
        return self.family.render_prompt(self, request)

    def save_processor(self, out: str | Path) -> None:
        """Save the processor so plain `AutoProcessor.from_pretrained(out)` reads a public class name."""
        self.family.save_processor(self.processor, Path(out))

    def _add_special(self, text: str) -> bool:
        # a template that writes <s> itself must not get a second one from the tokenizer
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def _continuation_text(self, prompt: str, continuation: str) -> str:
        sep = " " if prompt and not prompt[-1].isspace() and continuation[:1] and not continuation[0].isspace() else ""
        return prompt + sep + continuation

    def _n_continuation_tokens(self, prompt: str, full: str) -> int:
        add = self._add_special(prompt)
        p = self.tokenizer(prompt, add_special_tokens=add)["input_ids"]
        f = self.tokenizer(full, add_special_tokens=add)["input_ids"]
        return len(f) - _common_prefix(p, f)

    # -- inputs -----------------------------------------------------------------------------------------
    def build_inputs(self, requests: Sequence[Request], continuations: Sequence[str | None] | None = None,
                     append_eos: bool = False) -> dict[str, Any]:
        """Left-padded model inputs for `requests`, plus `labels` marking continuation tokens.

        `continuations[i]` (default: `requests[i].continuation`) is appended to the rendered prompt (see
        module docstring); `append_eos` adds the eos token after it (DPO-style targets). Returns a dict of
        tensors on the model's device: input_ids, attention_mask, pixel_values (+ image_sizes / image_grid_thw
        as the processor makes them), position_ids (1-D-RoPE models), and labels (B, T) = input_ids on
        continuation tokens, -100 elsewhere. Pass everything except `labels` to the model, then
        `gather_logprobs(logits, labels)`. A missing image raises DataError naming the file.
        """
        images = [load_image(r.image) if r.image else None for r in requests]
        if continuations is None:
            continuations = [r.continuation for r in requests]
        return self._encode(list(requests), list(continuations), images, append_eos)

    def _encode(self, requests, continuations, images, append_eos=False) -> dict[str, Any]:
        import torch

        texts, prompts, n_cont = [], [], []
        for req, cont in zip(requests, continuations):
            prompt = self.render_prompt(req)
            prompts.append(prompt)
            if cont is None:
                texts.append(prompt)
                n_cont.append(0)
                continue
            full = self._continuation_text(prompt, cont) + (self.tokenizer.eos_token if append_eos else "")
            texts.append(full)
            n_cont.append(self._n_continuation_tokens(prompt, full))
        add_special = self._add_special(texts[0])
        enc = self.family.encode(self, texts, prompts, images, add_special)
        inputs = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        for k in ("pixel_values", "pixel_values_videos"):
            if k in inputs:
                inputs[k] = inputs[k].to(self.model.dtype)
        mask = inputs["attention_mask"]
        if not bool(mask[:, -1].all()):  # every row must end at the last column for labels and generation
            raise HalbenchError(f"{self.path}: tokenizer did not left-pad (padding_side={self.tokenizer.padding_side})")
        positions = self.family.position_ids(self.model, inputs)
        if positions is not None:
            inputs["position_ids"] = positions
        labels = torch.full_like(inputs["input_ids"], -100)
        for row, n in enumerate(n_cont):
            if n:
                labels[row, -n:] = inputs["input_ids"][row, -n:]
        inputs["labels"] = labels
        return inputs

    # -- batching ---------------------------------------------------------------------------------------
    def _chunks(self, requests: list[Request], key) -> list[list[int]]:
        """Indices grouped by `key(request)` (settings that must be shared in a batch), then by batch_size."""
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[key(r)].append(i)
        return [idx[k:k + self.batch_size] for idx in groups.values() for k in range(0, len(idx), self.batch_size)]

    def _run(self, requests: list[Request], key, fn, desc: str) -> list[Response]:
        """Apply `fn(reqs, images) -> list[Response]` chunk by chunk, isolating per-request failures."""
        from tqdm.auto import tqdm

        out: list[Response | None] = [None] * len(requests)
        chunks = self._chunks(requests, key)
        for chunk in tqdm(chunks, desc=desc, disable=not self.progress or len(chunks) <= 1):
            ok, images = [], []
            for i in chunk:  # a missing image fails its own request, not the batch
                try:
                    images.append(load_image(requests[i].image) if requests[i].image else None)
                    ok.append(i)
                except HalbenchError as e:
                    out[i] = Response(text="", error=str(e), model_id=self.model_id)
            for i, resp in zip(ok, self._run_chunk([requests[i] for i in ok], images, fn)):
                out[i] = resp
        return out  # type: ignore[return-value]

    def _run_chunk(self, reqs, images, fn) -> list[Response]:
        if not reqs:
            return []
        try:
            return fn(reqs, images)
        except (HalbenchError, RuntimeError, ValueError, IndexError) as e:
            if len(reqs) > 1:  # find the request that breaks the batch; the others still get answers
                self._note_fallback(len(reqs), e)
                return [r for k in range(len(reqs)) for r in self._run_chunk(reqs[k:k + 1], images[k:k + 1], fn)]
            return [Response(text="", error=f"{type(e).__name__}: {e}", model_id=self.model_id)]

    def _note_fallback(self, n: int, error: Exception) -> None:
        """Count a batch re-run one request at a time; warn the first time (never silently slower)."""
        import warnings

        if not self.batch_fallbacks:
            warnings.warn(f"{self.path}: a batch of {n} failed ({type(error).__name__}: {error}); re-running its "
                          "requests one at a time (slower; counted as model.batch_fallbacks in results.json)",
                          RuntimeWarning, stacklevel=3)
        self.batch_fallbacks += 1

    # -- generation -------------------------------------------------------------------------------------
    def generate(self, requests: list[Request]) -> list[Response]:
        if self._prefix is not None:
            return self._prefix.generate(list(requests))
        return self.generate_plain(requests)

    def generate_plain(self, requests: list[Request]) -> list[Response]:
        """Batched generation without prefix reuse (the prefix cache falls back to this)."""
        return self._run(list(requests), lambda r: (r.generation, r.image is not None), self._generate_chunk,
                         "generate")

    def _gen_kwargs(self, g: GenerationSettings) -> dict[str, Any]:
        eos = self.model.generation_config.eos_token_id
        kw = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, num_beams=g.num_beams,
                  pad_token_id=self.tokenizer.pad_token_id,
                  eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id)
        if g.do_sample:
            kw.update(temperature=g.temperature, top_p=g.top_p, top_k=0)
        else:  # unset sampling knobs a checkpoint's generation_config may carry (avoids warnings)
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def _chunk_seed(self, reqs: list[Request]) -> int:
        # depends on the seed and the requests, not on call order: a resumed run samples the same text
        return zlib.crc32("\0".join([str(self.seed)] + [r.id for r in reqs]).encode())

    def _generate_chunk(self, reqs: list[Request], images: list) -> list[Response]:
        import torch

        inputs = self._encode(reqs, [None] * len(reqs), images)
        inputs.pop("labels")
        inputs.pop("position_ids", None)  # generate() derives them from the attention mask at every step
        g = reqs[0].generation
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._chunk_seed(reqs))
            if g.do_sample and self.device != "cpu" and torch.cuda.is_available():
                torch.cuda.manual_seed_all(self._chunk_seed(reqs))
            out = self.model.generate(**inputs, **self._gen_kwargs(g))
        new = out[:, inputs["input_ids"].shape[1]:].tolist()
        prompt_lens = inputs["attention_mask"].sum(-1).tolist()
        return [self._decode(row, int(n)) for row, n in zip(new, prompt_lens)]

    def _decode(self, ids: list[int], prompt_tokens: int) -> Response:
        eos = self._gen_kwargs(GenerationSettings())["eos_token_id"]
        eos = set(eos if isinstance(eos, list) else [eos])
        end = next((k for k, t in enumerate(ids) if t in eos), None)
        body = ids if end is None else ids[:end]
        n = len(ids) if end is None else end + 1  # the eos the model chose counts; padding after it doesn't
        text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
        return Response(text=text, n_generated_tokens=n, model_id=self.model_id,
                        usage={"prompt_tokens": prompt_tokens, "completion_tokens": n})

    # -- log-likelihood ---------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Request]) -> list[Response]:
        """token_logprobs of each request's `continuation` given its prompt and image (see module doc)."""
        requests = list(requests)
        missing = [r.id for r in requests if r.continuation is None]
        if missing:
            raise HalbenchError(f"loglikelihood needs request.continuation; missing for ids {missing[:5]}")
        return self._run(requests, lambda r: r.image is not None, self._loglik_chunk, "loglikelihood")

    def _loglik_chunk(self, reqs: list[Request], images: list) -> list[Response]:
        import torch

        inputs = self._encode(reqs, [r.continuation for r in reqs], images)
        labels = inputs.pop("labels")
        with torch.no_grad():
            logits = self.model(**inputs).logits
        logps, mask = gather_logprobs(logits, labels)
        out = []
        for row, req in enumerate(reqs):
            sel = mask[row]
            ids = labels[row, 1:][sel].tolist()
            out.append(Response(text=req.continuation or "", token_logprobs=logps[row][sel].tolist(),
                                tokens=self.tokenizer.convert_ids_to_tokens(ids), model_id=self.model_id))
        return out
