"""The data that flows through an evaluation: Request -> Response -> record.

A task turns a sample into a Request (what to ask), a model turns Requests into Responses (what it said),
and the task scores (sample, Response) into a record (a flat JSON-able dict). A failed generation is a
Response with `error` set and is never scored as if the model had answered (lmms-eval turns errors into "",
which scores as "no hallucination").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; greedy by default so results are deterministic."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1


@dataclass(frozen=True)
class Request:
    """What to ask a model about one sample.

    `image` is a path to an image file (or None for text-only requests); the model loads it with
    `halbench.images.load_image`, never by reaching back into the task. `continuation`, when set, asks for
    the log-probabilities of that text after the prompt instead of (or besides) generating.
    """

    id: str
    prompt: str
    image: str | None = None
    system: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    continuation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Response:
    """What a model said. `error` is set (and `text` is "") when generation failed."""

    text: str
    error: str | None = None
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    n_generated_tokens: int | None = None
    model_id: str | None = None
    usage: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class Metric:
    """A metric's name, which direction is better, and a one-line description for `halbench tasks`."""

    name: str
    direction: Direction
    description: str = ""

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓", "none": "·"}[self.direction]
