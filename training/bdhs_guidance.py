"""BDHS Algorithm 1 (Amirloo et al. 2024, arXiv 2407.02477): guidance plans, samplers and the attempt loop.

- Yes/No (Alg. 1, step 3): EVERY sentence of y+ matching `^\\s*(Yes|yes|No|no)\\b` has that word swapped
  (yes<->no, case kept) with probability flip_prob = 0.5, before splitting. (`\\b` is added to the paper's
  regex so that "Nothing"/"Nobody" are not read as "No".)
- Guidance (Eq. 7): for EACH sentence k of the (swapped) y+, a random split point keeps its first
  cut words, cut ~ U{0, ..., n_words - 1} (R: the paper does not say words or characters); the masked policy
  continues "y+_<k + kept part" -- the GROUND-TRUTH previous sentences, never generated text -- up to its
  first full stop / EOS. All sentences of all rows are generated in one parallel pass. Rejected = the
  concatenation over k of (kept part + completion).
- Filter (step 4): SBERT cosine similarity of rejected vs y+; similarity >= sim_threshold (0.97) resamples
  (new mask, new split points), up to N_BDHS = max_attempts = 5. When max_attempts > 1 the LAST attempt is a
  full response from the masked input without guidance, ACCEPTED whatever its similarity (`forced` when it
  would have failed the filter). An empty generation is never a pair (counted as dropped).
- The corrupted input is chosen by a Sampler: MaskSampler (image attention masked, training/image_mask.py)
  or NoiseSampler (BDHS_noise, training/bdhs_noise.py). Tests substitute a recording sampler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

_YESNO = re.compile(r"^\s*(Yes|yes|No|no)\b")
_SWAP = {"Yes": "No", "yes": "no", "No": "Yes", "no": "yes"}
_PUNCT = tuple(".,;:!?'\")")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, split after . ! ? followed by whitespace (R: the paper's splitter is not named)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def flip_yes_no(sentence: str) -> str:
    """Swap a leading Yes/yes/No/no (case kept); anything else is returned unchanged."""
    m = _YESNO.match(sentence)
    if not m:
        return sentence
    return sentence[:m.start(1)] + _SWAP[m.group(1)] + sentence[m.end(1):]


@dataclass
class Plan:
    """One guided attempt for one reference answer."""

    sentences: list[str]  # y+ after the yes/no swaps
    kept: list[str]  # the kept first part of each sentence
    contexts: list[str]  # what the model continues for sentence k: y+_<k + kept part
    flipped: int = 0  # sentences whose yes/no was swapped


def plan_guidance(answer: str, rng: np.random.Generator, flip_prob: float) -> Plan:
    sentences = []
    flipped = 0
    for s in split_sentences(answer):  # the swap is tested on every sentence, before splitting
        if _YESNO.match(s) and rng.random() < flip_prob:
            s, flipped = flip_yes_no(s), flipped + 1
        sentences.append(s)
    kept, contexts = [], []
    for k, s in enumerate(sentences):
        words = s.split()
        part = " ".join(words[:int(rng.integers(0, len(words)))])
        kept.append(part)
        contexts.append(" ".join(x for x in (*sentences[:k], part) if x))
    return Plan(sentences, kept, contexts, flipped)


def join_completion(kept: str, text: str) -> str:
    """kept part + generated continuation, with a space between words when the decode dropped it."""
    text = text.rstrip()
    if not kept:
        return text.strip()
    if not text or text[0].isspace() or text.startswith(_PUNCT):
        return (kept + text).strip()
    return f"{kept} {text}".strip()


class Sampler(Protocol):
    """Continuations of prompt (+ context) from the corrupted input; one text per request."""

    def __call__(self, requests: list[Any], contexts: list[str | None], *, seed: int, max_new_tokens: int,
                 one_sentence: bool) -> list[str]: ...


@dataclass
class MaskSampler:
    hf: Any
    keep_frac: float
    temperature: float = 1.0
    top_p: float = 1.0

    def __call__(self, requests, contexts, *, seed, max_new_tokens, one_sentence):
        from halbench.training.image_mask import generate_masked_texts

        return generate_masked_texts(self.hf, requests, contexts, keep_frac=self.keep_frac, seed=seed,
                                     max_new_tokens=max_new_tokens, temperature=self.temperature,
                                     top_p=self.top_p, one_sentence=one_sentence)


@dataclass
class NoiseSampler:
    hf: Any
    noise_step: int = 500
    temperature: float = 1.0
    top_p: float = 1.0

    def __call__(self, requests, contexts, *, seed, max_new_tokens, one_sentence):
        from halbench.training.bdhs_noise import generate_noised_texts

        return generate_noised_texts(self.hf, requests, contexts, noise_step=self.noise_step, seed=seed,
                                     max_new_tokens=max_new_tokens, temperature=self.temperature,
                                     top_p=self.top_p, one_sentence=one_sentence)


@dataclass
class Result:
    rejected: str | None = None
    attempts: int = 0
    similarities: list[float] = field(default_factory=list)
    guided: bool = False
    flipped: int = 0
    forced: bool = False  # accepted from the last (unguided) attempt although it failed the filter


class BDHSGenerator:
    """BDHS rejected answers. `hf`: an HFModel (reference model or live policy); `sampler` overrides how the
    corrupted input is sampled (default from settings.corruption: 'mask' or 'noise')."""

    def __init__(self, hf: Any, settings: Any, embedder: Any = None, sampler: Sampler | None = None):
        from halbench.training.bdhs import load_embedder

        self.hf, self.s = hf, settings
        self.embedder = embedder if embedder is not None else load_embedder(settings.embedder)
        self.sampler = sampler or default_sampler(hf, settings)

    def similarity(self, refs: list[str], cands: list[str]) -> list[float]:
        a = self.embedder.encode(refs, convert_to_tensor=True, normalize_embeddings=True)
        b = self.embedder.encode([c or " " for c in cands], convert_to_tensor=True, normalize_embeddings=True)
        return (a * b).sum(-1).tolist()

    def _chunked(self, reqs: list[Any], contexts: list[str | None], seed: int, max_new_tokens: int,
                 one_sentence: bool) -> list[str]:
        out: list[str] = []
        bs = self.s.gen_batch_size
        for j in range(0, len(reqs), bs):
            out += self.sampler(reqs[j:j + bs], contexts[j:j + bs], seed=seed * 1009 + j,
                                max_new_tokens=max_new_tokens, one_sentence=one_sentence)
        return out

    def guided(self, rows: list[Any], plans: list[Plan], seed: int) -> list[str]:
        """All sentences of all rows in one parallel pass, each from its ground-truth context."""
        reqs = _requests(rows)
        flat = [(i, k) for i, p in enumerate(plans) for k in range(len(p.contexts))]
        texts = self._chunked([reqs[i] for i, _ in flat], [plans[i].contexts[k] or None for i, k in flat], seed,
                              self.s.max_sentence_tokens, one_sentence=True)
        parts: list[list[str]] = [[] for _ in rows]
        for (i, k), text in zip(flat, texts):
            parts[i].append(join_completion(plans[i].kept[k], text))
        return [" ".join(p for p in ps if p) for ps in parts]

    def unguided(self, rows: list[Any], seed: int) -> list[str]:
        texts = self._chunked(_requests(rows), [None] * len(rows), seed, self.s.max_new_tokens, one_sentence=False)
        return [t.strip() for t in texts]

    def generate(self, rows: list[Any], indices: list[int] | None = None, seed: int = 0,
                 progress: bool = False) -> list[Result]:
        """One Result per row. `indices` (global row numbers) make each row's guidance plan independent of
        how rows are batched or sharded."""
        from tqdm.auto import tqdm

        indices = list(range(len(rows))) if indices is None else indices
        results = [Result() for _ in rows]
        bs, n_max = self.s.gen_batch_size, self.s.max_attempts
        for start in tqdm(range(0, len(rows), bs), desc="BDHS", disable=not progress):
            pending = list(range(start, min(start + bs, len(rows))))
            for attempt in range(1, n_max + 1):
                if not pending:
                    break
                batch = [rows[i] for i in pending]
                att_seed = seed * 7919 + attempt * 131 + start
                last_unguided = attempt == n_max and n_max > 1
                if last_unguided:
                    cands, flips = self.unguided(batch, att_seed), [0] * len(batch)
                else:
                    plans = [plan_guidance(r.chosen, np.random.default_rng([seed, attempt, indices[i]]),
                                           self.s.flip_prob) for r, i in zip(batch, pending)]
                    cands, flips = self.guided(batch, plans, att_seed), [p.flipped for p in plans]
                sims = self.similarity([r.chosen for r in batch], cands)
                for i, cand, sim, flipped in zip(pending, cands, sims, flips):
                    res = results[i]
                    res.attempts = attempt
                    res.similarities.append(round(float(sim), 6))
                    passes = sim < self.s.sim_threshold and _norm(cand) != _norm(rows[i].chosen)
                    if cand.strip() and (passes or last_unguided):
                        res.rejected, res.guided, res.flipped = cand, not last_unguided, flipped
                        res.forced = not passes
                pending = [i for i in pending if results[i].rejected is None]
        return results


def default_sampler(hf: Any, s: Any) -> Sampler:
    if getattr(s, "corruption", "mask") == "noise":
        return NoiseSampler(hf, s.noise_step, s.temperature, s.top_p)
    return MaskSampler(hf, s.keep_frac, s.temperature, s.top_p)


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _requests(rows: list[Any]) -> list[Any]:
    from halbench.schema import Request

    return [Request(id=str(r.id), prompt=r.prompt, image=r.image) for r in rows]
