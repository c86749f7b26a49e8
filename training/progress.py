"""Progress of a training run on the terminal: one tqdm bar (step, loss, reward margin or reward, ETA) and one
summary line at the end, on the main process only (other ranks stay silent).

The bar shows this process's running means since the last refresh (cheap: no cross-process reduction per
step); metrics.jsonl keeps the exact averages over processes. Which reward is shown depends on what the method
logs: the DPO family's (DPO, BDHS+DPO, online DPO) implicit reward margin `rewards/margins`, FiSAO's verifier
reward `reward/mean` — the first key present from REWARD_KEYS.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

#: the reward-like series shown next to the loss, first match wins
REWARD_KEYS = (("rewards/margins", "margin"), ("reward/mean", "reward"))


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class TrainProgress:
    """tqdm over optimizer steps; `add` micro-batch metrics, `step` after each optimizer step, `close`."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.enabled, self.desc, self.total, self.initial = enabled, desc, total, initial
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._sums: dict[str, list[float]] = {}
        self.started = time.time()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr,
                            dynamic_ncols=True)

    def add(self, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            f = _float(v.item() if hasattr(v, "item") else v)
            if f is not None:
                self._sums.setdefault(k, []).append(f)

    def step(self) -> None:
        if not self.enabled:
            return
        means = {k: sum(v) / len(v) for k, v in self._sums.items() if v}
        self._sums = {}
        for k, v in means.items():
            self.first.setdefault(k, v)
        self.last.update(means)
        self.bar.set_postfix(self.postfix(means), refresh=False)
        self.bar.update(1)

    def reward_key(self) -> tuple[str, str] | None:
        return next(((k, name) for k, name in REWARD_KEYS if k in self.last), None)

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        out = {}
        if "loss" in means:
            out["loss"] = f"{means['loss']:.4f}"
        rk = self.reward_key()
        if rk and rk[0] in means:
            out[rk[1]] = f"{means[rk[0]]:+.3f}"
        return out

    def summary(self) -> str:
        steps = (self.bar.n if self.bar else self.total) - self.initial
        text = f"{self.desc}: {steps} step(s) in {time.time() - self.started:.0f} s"
        if self.initial:
            text += f" (resumed at step {self.initial})"
        parts = [("loss", "loss")] + ([self.reward_key()] if self.reward_key() else [])
        for key, name in parts:
            if key in self.first:
                text += f"; {name} {self.first[key]:.4f} -> {self.last[key]:.4f}"
        return text

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        print(self.summary(), file=sys.stderr, flush=True)
