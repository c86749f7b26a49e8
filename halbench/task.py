"""The Task protocol: samples -> requests -> scored records -> aggregated metrics.

Copied in spirit from lm-eval-harness's dataflow, kept small. A task module opens with a card (source paper,
data files and hashes, prompt, parsing rule, metric definitions and directions, parity status). Variants
(POPE splits, CHAIR pipelines) are entries in `variants`, not subclasses.

Contract used by the evaluator (halbench/evaluator.py):
- `samples()` returns a list of dicts, each with a unique string `"id"`; order is deterministic.
- `request(sample)` returns a `Request` whose `id` equals `sample["id"]`.
- `score(sample, response)` is only called for responses without `error`; it returns a JSON-able dict
  (the per-sample record, shown in reports). The evaluator adds `id`, `prompt`, `image`, `response`, `error`.
- `aggregate(records)` receives every record of the run (successful ones have `error is None`) and returns
  {metric_name: number}; it must count and report errors, never score them.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from halbench.schema import Metric, Request, Response


class Task(ABC):
    #: registry name, e.g. "pope"
    name: ClassVar[str]
    #: {variant_name: one-line description}; the first is the default
    variants: ClassVar[dict[str, str]] = {"default": ""}
    #: metrics this task reports, with their direction
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: model capabilities the task needs, e.g. {"generate"} or {"generate", "logprobs"}
    required_capabilities: ClassVar[frozenset[str]] = frozenset({"generate"})
    #: bump when prompts or scoring change in a way that changes numbers
    version: ClassVar[str] = "1"

    def __init__(self, variant: str | None = None, **options: Any):
        variant = variant or next(iter(self.variants))
        if variant not in self.variants:
            from halbench.errors import HalbenchError

            raise HalbenchError(
                f"task {self.name!r} has no variant {variant!r}; choose one of {', '.join(self.variants)}"
            )
        self.variant = variant
        self.options = options
        #: set by the evaluator before aggregate(): where to write plots/files for this task
        self.artifacts_dir: Path | None = None
        #: {label: filename relative to artifacts_dir}, filled by aggregate() when it writes files
        self.artifacts: dict[str, str] = {}

    # -- the four steps -------------------------------------------------------------------------------
    @abstractmethod
    def samples(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def request(self, sample: dict[str, Any]) -> Request: ...

    @abstractmethod
    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]: ...

    @abstractmethod
    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]: ...

    def score_batch(self, samples: list[dict[str, Any]], responses: list[Response]) -> list[dict[str, Any]]:
        """Score several successful responses at once (judges override this to run calls concurrently)."""
        return [self.score(s, r) for s, r in zip(samples, responses)]

    def prepare(self) -> None:
        """Load what scoring needs (lexicons, judges) before the first request, so a missing resource is
        reported up front instead of after the model has run."""

    def needs_rescore(self, record: dict[str, Any]) -> bool:
        """True for a stored record whose scoring failed (e.g. the judge call failed): a re-run scores its
        stored response again instead of regenerating it."""
        return False

    # -- reproducibility metadata ---------------------------------------------------------------------
    def data_files(self) -> list[Path]:
        """Files whose content determines the samples (hashed into results.json)."""
        return []

    def prompt_fingerprint(self, samples: list[dict[str, Any]]) -> str:
        """sha256 over the exact prompts sent (first 16 hex)."""
        h = hashlib.sha256()
        for s in samples:
            h.update(json.dumps(self.request(s).prompt).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What `halbench tasks` prints and results.json records."""
        return {
            "name": self.name,
            "variant": self.variant,
            "version": self.version,
            "options": {k: str(v) for k, v in self.options.items()},
        }

    @property
    def full_name(self) -> str:
        return f"{self.name}:{self.variant}"
