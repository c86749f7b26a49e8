"""The offline rule-based judge: a deterministic function of the request's structured fields.

It answers in the same text format an LLM judge is asked for (e.g. "Rating: 5, ..."), so its replies go
through exactly the same parser and bookkeeping as an HTTP or HF judge's. It costs nothing, so it is never
cached (a rule change then takes effect at once). What a given rule can and cannot measure is documented
next to the rule (e.g. halbench.tasks.world_mmhal.rule_verdict).
"""

from __future__ import annotations

from typing import Callable

from halbench.schema import Request, Response
from halbench.judges.base import Judge, JudgeRequest

#: A rule reads a JudgeRequest's `fields` and returns the judge's reply text.
Rule = Callable[[JudgeRequest], str]


class RuleJudge(Judge):
    """`RuleJudge(rule, name="mmhal-world", version="1")`; its model id is `rule:NAME@vVERSION`."""

    backend = "rule"

    def __init__(self, rule: Rule, name: str, version: str = "1", **kw):
        kw["cache"] = None
        kw.setdefault("parse_retries", 0)  # deterministic: asking again gives the same answer
        super().__init__(**kw)
        self.rule, self.name, self.version = rule, name, version

    @property
    def judge_id(self) -> str:
        return f"rule:{self.name}@v{self.version}"

    def _complete(self, requests: list[Request]) -> list[Response]:
        out = []
        for r in requests:
            if not isinstance(r, JudgeRequest):  # a plain prompt carries nothing a rule can read
                out.append(Response(text="", error=f"the rule judge {self.judge_id} needs a JudgeRequest"))
                continue
            try:
                out.append(Response(text=self.rule(r), model_id=self.judge_id))
            except (KeyError, TypeError, ValueError) as e:  # a sample without the fields the rule reads
                out.append(Response(text="", error=f"rule failed on {r.id}: {e!r}", model_id=self.judge_id))
        return out
