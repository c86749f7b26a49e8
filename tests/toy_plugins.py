"""A deterministic toy task and model for testing the core without any weights.

The toy model answers "yes" when the prompt's number is even; it can sleep per batch (to let the SIGKILL
test interrupt it) and fail on chosen ids (to test error handling).
"""

from __future__ import annotations

import time
from pathlib import Path

from halbench.models.base import Model
from halbench.schema import Metric, Request, Response
from halbench.task import Task


class ToyTask(Task):
    name = "toy"
    variants = {"default": "even numbers are yes", "strict": "same, other name"}
    metrics = (Metric("accuracy", "higher"), Metric("n_samples", "none"))

    def samples(self):
        n = int(self.options.get("n", 40))
        image = self.options.get("image")
        return [{"id": f"q{i}", "n": i, "label": "yes" if i % 3 else "no", "image": image} for i in range(n)]

    def request(self, sample):
        return Request(id=sample["id"], prompt=f"Is {sample['n']} even?", image=sample["image"])

    def score(self, sample, response):
        pred = "yes" if response.text.lower().startswith("yes") else "no"
        return {"label": sample["label"], "pred": pred, "correct": pred == sample["label"]}

    def aggregate(self, records):
        ok = [r for r in records if r.get("error") is None]
        acc = sum(r["correct"] for r in ok) / len(ok) if ok else float("nan")
        return {"accuracy": acc, "n_samples": len(records), "n_errors": len(records) - len(ok)}


class ToyModel(Model):
    backend = "toy"
    capabilities = frozenset({"generate", "image"})

    def __init__(self, sleep: float = 0.0, fail_ids: tuple[str, ...] = (), log: Path | None = None):
        self.model_id = "toy-model"
        self.sleep, self.fail_ids, self.log = sleep, set(fail_ids), log
        self.calls = 0

    def fingerprint(self):
        return "toy0000"

    def generate(self, requests: list[Request]) -> list[Response]:
        self.calls += 1
        time.sleep(self.sleep)
        if self.log:
            with open(self.log, "a") as f:
                f.write(" ".join(r.id for r in requests) + "\n")
        out = []
        for r in requests:
            if r.id in self.fail_ids:
                out.append(Response(text="", error="simulated failure"))
                continue
            n = int(r.prompt.split()[1])
            out.append(Response(text="Yes." if n % 2 == 0 else "No."))
        return out
