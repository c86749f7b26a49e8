"""The Model protocol. A model never sees a task: it answers Requests.

Capabilities (checked by the evaluator before the first request):
- "generate": `generate(requests) -> list[Response]`
- "logprobs": `loglikelihood(requests) -> list[Response]` where each request has `continuation` set and the
  response carries `token_logprobs` for the continuation tokens (sum = log p(continuation | prompt, image)).
- "image": accepts requests with an image.
- "image_attention_mask": supports masking the language model's attention to image tokens (BDHS).
A Judge is a Model too (see halbench/judges.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from halbench.schema import Request, Response


class Model(ABC):
    #: backend name used in --model specs ("hf", "openai")
    backend: ClassVar[str]
    capabilities: frozenset[str] = frozenset({"generate"})

    #: a human-readable id (path or served model name)
    model_id: str

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash of the weights (or of the served model id for HTTP backends), not just the path."""

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[Response]:
        """One Response per Request, same order; failures are Responses with `error` set."""

    def loglikelihood(self, requests: list[Request]) -> list[Response]:
        raise NotImplementedError(f"{type(self).__name__} does not support log-probabilities")

    def describe(self) -> dict:
        return {"backend": self.backend, "model_id": self.model_id, "capabilities": sorted(self.capabilities)}
