"""Retry delays: capped exponential backoff with jitter.

The jitter is seeded by the failed Job's uid, so every reconcile of the same
failure computes the same delay and no state beyond the Job is needed.
"""

from __future__ import annotations

import random

JITTER = 0.2  # +-20%: enough to spread migrations that failed together


def delay(attempt: int, base: float, cap: float, seed: str) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    raw = min(cap, base * 2.0 ** max(attempt - 1, 0))
    spread = random.Random(seed).uniform(-JITTER, JITTER)
    return max(0.0, min(cap, raw * (1 + spread)))
