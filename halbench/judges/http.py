"""A judge behind any OpenAI-compatible chat-completions endpoint (hosted APIs, vLLM, SGLang).

Spec: `openai:MODEL@URL`, e.g. `openai:gpt-4o-2024-08-06@https://api.openai.com/v1` or
`openai:Qwen/Qwen2-72B-Instruct@http://localhost:8000/v1`. The HTTP work (bounded concurrency, timeouts,
retries with backoff) is halbench.models.openai.ChatClient's; this module only builds the messages.

The API key is read by ChatClient from an environment variable when a request is sent: the one
`api_key_env` (task option `judge_api_key_env`, CLI `--judge-api-key-env`) names, else `OPENAI_API_KEY` for
https://api.openai.com only; never over plain http to a non-loopback host unless `allow_insecure_http`. It never enters the judge id, the cache, records, results or reports; a URL
with user:password@ in it is refused for the same reason.

Image-aware judging (the MMHal-V idea): with `image=True` each request's image is sent inline as a base64
data URL in an `image_url` content part, which vision endpoints accept.
"""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import urlsplit, urlunsplit

from halbench.errors import HalbenchError, JudgeError
from halbench.schema import Request, Response
from halbench.judges.base import Judge

#: Approximate list prices, USD per 1M (prompt, completion) tokens, from the providers' pricing pages
#: (OpenAI, 2024-2025). They change; pass judge_price=IN,OUT to override. Matched by longest model prefix.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4-1106": (10.00, 30.00),
    "gpt-4-0125": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


def default_price(model: str) -> tuple[float, float] | None:
    matches = [p for p in PRICES if model.startswith(p)]
    return PRICES[max(matches, key=len)] if matches else None


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """'openai:MODEL@URL' -> (MODEL, URL), split as halbench.models.openai does; credentials in the URL refused."""
    from halbench.models.openai import split_spec

    try:
        model, url = split_spec(spec)
    except HalbenchError as e:
        raise JudgeError(f"judge spec {spec!r}: expected openai:MODEL@URL, "
                         "e.g. openai:gpt-4o@https://api.openai.com/v1") from e
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise JudgeError(f"judge spec {spec!r}: the URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise JudgeError("judge URL must not carry credentials (user:password@); put the key in an env var "
                         "and name it with --judge-api-key-env NAME (task option judge_api_key_env=NAME)")
    return model, url.rstrip("/")


def _messages(r: Request, with_image: bool) -> list[dict]:
    from halbench.models.openai import image_data_url

    msgs = [{"role": "system", "content": r.system}] if r.system else []
    if with_image and r.image:
        image = {"type": "image_url", "image_url": {"url": image_data_url(r.image)}}
        msgs.append({"role": "user", "content": [image, {"type": "text", "text": r.prompt}]})
    else:
        msgs.append({"role": "user", "content": r.prompt})
    return msgs


class OpenAIJudge(Judge):
    """`OpenAIJudge("openai:MODEL@URL", image=False, api_key_env=None, concurrency=8, ...)`."""

    backend = "openai"

    def __init__(self, spec: str, *, image: bool = False, api_key_env: str | None = None,
                 concurrency: int = 8, timeout: float = 60, max_retries: int = 3, backoff: float = 1.0,
                 client=None, allow_insecure_http: bool = False, **kw):
        self.model, self.url = parse_openai_spec(spec)
        kw.setdefault("price", default_price(self.model))
        super().__init__(**kw)
        self.image = image
        self.capabilities = frozenset({"generate", "image"} if image else {"generate"})
        if client is None:
            from halbench.models.openai import ChatClient

            client = ChatClient(self.url, self.model, api_key_env=api_key_env, timeout=timeout,
                                max_retries=max_retries, concurrency=concurrency, backoff=backoff,
                                allow_insecure_http=allow_insecure_http)
        self.client = client

    @property
    def judge_id(self) -> str:
        parts = urlsplit(self.url)  # the query string can carry tokens on some gateways: keep it out
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return f"openai:{self.model}@{url}" + ("+image" if self.image else "")

    def _complete(self, requests: list[Request]) -> list[Response]:
        # one concurrent batch per max_tokens value (tasks normally use one)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.generation.max_new_tokens].append(i)
        out: list[Response | None] = [None] * len(requests)
        for max_tokens, idx in groups.items():
            sendable, messages = [], []
            for i in idx:
                try:
                    messages.append(_messages(requests[i], self.image))
                    sendable.append(i)
                except HalbenchError as e:  # an unreadable image fails this verdict only
                    out[i] = Response(text="", error=str(e))
            results = self.client.complete(messages, temperature=0.0, max_tokens=max_tokens)
            for i, res in zip(sendable, results):
                out[i] = Response(text=res.text or "", error=res.error, model_id=res.model_id,
                                  usage=dict(res.usage) if res.usage else None)
        return out  # type: ignore[return-value]
