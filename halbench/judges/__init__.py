"""Judges for judged benchmarks (Object HalBench extraction, MMHal-Bench rating).

One protocol (halbench.judges.base.Judge, a Model), three backends:

| spec                  | backend                                  | sees the image        |
|-----------------------|------------------------------------------|-----------------------|
| `rule`                | RuleJudge: a task-supplied offline rule  | (reads structured GT) |
| `openai:MODEL@URL`    | OpenAIJudge over ChatClient (HTTP)       | with judge_image=true |
| `hf:DIR` or `DIR`     | HFJudge over halbench.models.HFModel     | VLM dir + judge_image |

Task options understood by `judge_from_options` (the same names for every judged task):
`judge`, `max_judge_calls`, `judge_image` (bool), `judge_price` ("IN,OUT" USD per 1M tokens),
`judge_cache` ("on" | "off" | a path to an SQLite file), `judge_api_key_env` (env var holding the key),
`judge_concurrency`, `judge_timeout` (s), `judge_max_retries`, `judge_backoff` (s, doubled per retry),
`judge_device`, `judge_allow_insecure_http` (bool: allow a key over plain http to a non-loopback host).
`max_judge_calls` caps the HTTP and HF backends; the rule judge costs nothing and is not capped.
"""

from __future__ import annotations

from typing import Any, Mapping

from halbench.errors import JudgeError
from halbench.judge_cache import JudgeCache
from halbench.judges.base import JUDGE_GENERATION, Judge, JudgeRequest, JudgeStats, Parser, Verdict
from halbench.judges.rule import Rule, RuleJudge

__all__ = [
    "JUDGE_GENERATION", "Judge", "JudgeRequest", "JudgeStats", "Parser", "Verdict", "Rule", "RuleJudge",
    "make_judge", "judge_from_options", "parse_price", "JUDGE_OPTIONS",
]

#: Task option names every judged task accepts (passed through from --task-option / --judge).
JUDGE_OPTIONS = ("judge", "max_judge_calls", "judge_image", "judge_price", "judge_cache",
                 "judge_api_key_env", "judge_concurrency", "judge_timeout", "judge_max_retries", "judge_backoff",
                 "judge_device", "judge_allow_insecure_http")
_HTTP_ONLY = ("api_key_env", "concurrency", "timeout", "max_retries", "backoff", "allow_insecure_http")


def parse_price(value: Any) -> tuple[float, float] | None:
    """'2.5,10' or [2.5, 10] -> (2.5, 10.0): USD per 1M prompt / completion tokens."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        pin, pout = (float(x) for x in items)
    except (TypeError, ValueError) as e:
        raise JudgeError(f"judge_price={value!r}: expected IN,OUT in USD per 1M tokens, e.g. 2.5,10") from e
    return pin, pout


def _cache(value: Any) -> JudgeCache | None:
    if value in (False, "off", "no", "false", "none", 0):
        return None
    if value in (None, True, "on", "yes", "true", 1):
        return JudgeCache()
    return JudgeCache(str(value))


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True", "yes", "on")


def make_judge(spec: str, *, rule: Rule | None = None, rule_name: str = "rule", rule_version: str = "1",
               image: bool = False, cache: JudgeCache | None = None, max_calls: int | None = None,
               price: tuple[float, float] | None = None, **backend_kw: Any) -> Judge:
    """A judge from a spec string: 'rule', 'openai:MODEL@URL', 'hf:DIR' or a checkpoint directory."""
    spec = spec.strip()
    common: dict[str, Any] = {"max_calls": max_calls}
    if price is not None:
        common["price"] = price
    if spec == "rule":
        if rule is None:
            raise JudgeError("this task has no rule-based judge for its data; pass --judge openai:MODEL@URL "
                             "or --judge hf:DIR")
        return RuleJudge(rule, rule_name, rule_version)  # free and offline: no call cap, no price
    if spec.startswith("openai:"):
        from halbench.judges.http import OpenAIJudge

        return OpenAIJudge(spec, image=image, cache=cache, **common, **backend_kw)
    from halbench.judges.hf import HFJudge

    hf_kw = {k: v for k, v in backend_kw.items() if k in ("device", "batch_size", "trust_remote_code", "model")}
    return HFJudge(spec, image=image, cache=cache, **common, **hf_kw)


def judge_from_options(options: Mapping[str, Any], *, default: str = "rule", rule: Rule | None = None,
                       rule_name: str = "rule", rule_version: str = "1") -> Judge:
    """Build the judge a task's options ask for (see JUDGE_OPTIONS)."""
    spec = str(options.get("judge") or default)
    kw: dict[str, Any] = {}
    for opt, conv in (("judge_api_key_env", str), ("judge_concurrency", int), ("judge_timeout", float),
                      ("judge_max_retries", int), ("judge_backoff", float), ("judge_device", str),
                      ("judge_allow_insecure_http", _flag)):
        if options.get(opt) is not None:
            kw[opt.removeprefix("judge_")] = conv(options[opt])
    drop = ("device",) if spec.startswith("openai:") else _HTTP_ONLY
    kw = {k: v for k, v in kw.items() if k not in drop}
    max_calls = options.get("max_judge_calls")
    return make_judge(
        spec, rule=rule, rule_name=rule_name, rule_version=rule_version, image=_flag(options.get("judge_image")),
        cache=None if spec == "rule" else _cache(options.get("judge_cache")),
        max_calls=None if max_calls is None else int(max_calls), price=parse_price(options.get("judge_price")),
        **kw,
    )
