"""Learning-rate schedules: linear warmup, then cosine decay or WSD (warmup-stable-decay)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.errors import ProxyError

SCHEDULES = ("cosine", "wsd", "constant")


@dataclass(frozen=True)
class Schedule:
    """LR as a function of the optimizer step (0-based); a pure function, so resume is exact.

    cosine: warmup, then cosine from lr down to min_lr_ratio * lr at the last step.
    wsd: warmup, constant lr, then a linear decay to min_lr_ratio * lr over the last decay_frac.
    """

    lr: float
    total_steps: int
    warmup_steps: int = 0
    kind: str = "cosine"
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ProxyError(f"schedule: {self.kind!r} is not one of {', '.join(SCHEDULES)}")
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ProxyError(
                f"schedule: need 0 <= warmup_steps ({self.warmup_steps}) <= total_steps "
                f"({self.total_steps}) and total_steps >= 1"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0 or not 0.0 <= self.decay_frac <= 1.0:
            raise ProxyError("schedule: min_lr_ratio and decay_frac must lie in [0, 1]")

    def __call__(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        floor = self.lr * self.min_lr_ratio
        if self.kind == "constant":
            return self.lr
        if self.kind == "cosine":
            span = max(1, self.total_steps - 1 - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        decay_steps = max(1, round(self.decay_frac * self.total_steps))
        start = self.total_steps - decay_steps
        if step < start:
            return self.lr
        t = min(1.0, (step - start + 1) / decay_steps)
        return self.lr + (floor - self.lr) * t
