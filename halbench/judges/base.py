"""The Judge protocol: a Model that answers judge prompts, with caching, a call cap and honest accounting.

A judge has the shape of a Model (`generate(requests) -> list[Response]`), so any backend that can answer a
prompt can judge: an OpenAI-compatible endpoint, a local HF model, or a rule. On top of that it adds what the
reference scripts lack (RLAIF-V eval_gpt_obj_halbench.py, LLaVA-RLHF eval_gpt_mmhal.py score a failed or
unparseable call as 0):

- `judge(requests, parse)` -> list[Verdict]: looks each prompt up in the cache, sends the rest to the backend
  (temperature 0), parses each reply with the task's parser, re-asks once (`parse_retries`) when a reply
  cannot be parsed, and returns a Verdict with `error` set for every call that still failed. A failure is
  never turned into a score; only parseable replies are cached.
- `max_calls` caps the backend calls of this judge's lifetime (one eval run); requests beyond the cap fail
  with an error that says so. Cached verdicts cost no call.
- `stats` counts total / judged / failed / cached / calls / capped, tokens, the model ids the backend
  actually returned, and an estimated cost (`price` = USD per 1M prompt and completion tokens).
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from halbench.errors import HalbenchError
from halbench.judge_cache import JudgeCache, cache_key
from halbench.models.base import Model
from halbench.schema import GenerationSettings, Request, Response

#: parse(text) -> (value, error): error None means the reply was understood.
Parser = Callable[[str], "tuple[Any, str | None]"]

#: Greedy, enough room for an explanation + a rating. Tasks may pass their own settings.
JUDGE_GENERATION = GenerationSettings(max_new_tokens=512, do_sample=False, temperature=0.0)


@dataclass(frozen=True)
class JudgeRequest(Request):
    """A Request for a judge. `fields` carries the structured inputs a rule judge reads (LLM judges read
    only `prompt`); they are never part of the cache key, which covers everything an LLM judge sees."""

    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    text: str | None  # the raw judge reply (also kept for failures when there was one)
    value: Any = None  # what the task's parser made of it (None on failure)
    error: str | None = None
    model_id: str | None = None  # the model id the backend returned (cached verdicts: the original one)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class JudgeStats:
    total: int = 0
    judged: int = 0
    failed: int = 0
    cached: int = 0
    calls: int = 0
    capped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_ids: Counter = field(default_factory=Counter)

    def cost_usd(self, price: tuple[float, float] | None) -> float | None:
        if price is None:
            return None
        return (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6

    def as_metrics(self, price: tuple[float, float] | None = None) -> dict[str, float | int]:
        """Numbers for a task's metrics dict (prefix judge_); the cost only when a price is known."""
        out: dict[str, float | int] = {
            "judge_total": self.total, "judge_judged": self.judged, "judge_failures": self.failed,
            "judge_cached": self.cached, "judge_calls": self.calls, "judge_capped": self.capped,
            "judge_prompt_tokens": self.prompt_tokens, "judge_completion_tokens": self.completion_tokens,
        }
        cost = self.cost_usd(price)
        if cost is not None:
            out["judge_cost_usd"] = round(cost, 6)
        return out


class Judge(Model):
    """Base class of judge backends; subclasses implement `_complete` (one backend round, no cache)."""

    backend: ClassVar[str]

    def __init__(self, *, cache: JudgeCache | None = None, max_calls: int | None = None,
                 parse_retries: int = 1, price: tuple[float, float] | None = None):
        if max_calls is not None and max_calls < 0:
            raise HalbenchError(f"max_judge_calls must be >= 0, got {max_calls}")
        self.cache, self.max_calls, self.parse_retries, self.price = cache, max_calls, parse_retries, price
        self.stats = JudgeStats()

    # -- what subclasses provide ----------------------------------------------------------------------
    @property
    @abstractmethod
    def judge_id(self) -> str:
        """Stable id of the requested judge (backend + model + output-affecting settings); the cache key."""

    @abstractmethod
    def _complete(self, requests: list[Request]) -> list[Response]:
        """Send each request once (transport retries are the backend's business); errors in Response.error."""

    # -- Model protocol -------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:  # type: ignore[override]
        return self.judge_id

    def fingerprint(self) -> str:
        return self.judge_id

    def generate(self, requests: list[Request]) -> list[Response]:
        """Model-shaped access: every reply counts as understood; cached, capped and counted like judge()."""
        verdicts = self.judge(requests, lambda text: (text, None))
        return [Response(text=v.text or "", error=v.error, model_id=v.model_id) for v in verdicts]

    def describe(self) -> dict:
        return {
            "judge": self.judge_id, "backend": self.backend,
            "returned_model_ids": dict(self.stats.model_ids), "max_calls": self.max_calls,
            "price_usd_per_1m_tokens": list(self.price) if self.price else None,
            "cache": str(self.cache.path) if self.cache is not None else None,
        }

    # -- the verdict loop -----------------------------------------------------------------------------
    def judge(self, requests: list[Request], parse: Parser) -> list[Verdict]:
        """One Verdict per request, same order. Never raises for a failed call."""
        self.stats.total += len(requests)
        out: list[Verdict | None] = [self._from_cache(r, parse) for r in requests]
        pending = [i for i, v in enumerate(out) if v is None]
        last: dict[int, Verdict] = {}  # the latest unparseable reply of each request being re-asked
        for _attempt in range(1 + max(0, self.parse_retries)):
            pending = self._within_cap(pending, out, last)
            if not pending:
                break
            replies = self._complete([requests[i] for i in pending])
            retry = []
            for i, resp in zip(pending, replies):
                verdict = self._verdict(requests[i], resp, parse)
                if verdict.ok or resp.error is not None:  # transport failures were retried by the backend
                    out[i] = verdict
                else:
                    last[i] = verdict
                    retry.append(i)
            pending = retry
        for i in pending:  # still unparseable after the retries
            out[i] = last[i]
        for v in out:
            assert v is not None
            self.stats.judged += v.ok
            self.stats.failed += not v.ok
        return out  # type: ignore[return-value]

    def _key(self, r: Request) -> str:
        return cache_key(self.judge_id, r.prompt, r.system, r.image, r.generation.max_new_tokens)

    def _from_cache(self, r: Request, parse: Parser) -> Verdict | None:
        if self.cache is None:
            return None
        hit = self.cache.get(self._key(r))
        if hit is None:
            return None
        value, error = parse(hit.text)
        if error is not None:  # the task's parser changed since; ask again
            return None
        self.stats.cached += 1
        return Verdict(hit.text, value, None, hit.model_id, cached=True)

    def _within_cap(self, pending: list[int], out: list[Verdict | None], last: dict[int, Verdict]) -> list[int]:
        """Keep what the call budget allows; the rest fail with an error naming the cap."""
        if self.max_calls is None:
            return pending
        room = max(0, self.max_calls - self.stats.calls)
        cap = f"judge call cap reached (max_judge_calls={self.max_calls})"
        for i in pending[room:]:
            self.stats.capped += 1
            prev = last.get(i)
            out[i] = Verdict(prev.text, None, f"{prev.error}; not re-asked: {cap}", prev.model_id) if prev \
                else Verdict(None, error=cap)
        return pending[:room]

    def _verdict(self, r: Request, resp: Response, parse: Parser) -> Verdict:
        self.stats.calls += 1
        usage = resp.usage or {}
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        if resp.model_id:
            self.stats.model_ids[resp.model_id] += 1
        if resp.error is not None:
            return Verdict(resp.text or None, error=f"judge call failed: {resp.error}", model_id=resp.model_id)
        value, error = parse(resp.text)
        if error is not None:
            return Verdict(resp.text, error=error, model_id=resp.model_id)
        if self.cache is not None:
            self.cache.put(self._key(r), self.judge_id, r.prompt, resp.text, resp.model_id, resp.usage)
        return Verdict(resp.text, value, None, resp.model_id)
