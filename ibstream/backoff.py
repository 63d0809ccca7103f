"""Exponential backoff with full jitter, for reconnects and retries (IB, Agent0, Kafka admin)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before attempt n is uniform in [c/2, c] with c = min(cap, base · 2^n) ("equal jitter"): clients that
    lost the same gateway do not reconnect in lockstep, and none retries at once. ``reset()`` after a success."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
