"""Training throughput in steady state, as benchmarks report it.

The clock starts at the end of an attempt's first optimizer step: that step also pays for the
data pipeline's start-up (Ray Data's split coordinator, the first blocks) and for allocator and
kernel warm-up, which a longer run amortizes away. Validation and checkpoint writes are paused
out. The first step's time is kept separately, so start-up cost is reported, not hidden.
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class Throughput:
    def __init__(self, world_size: int):
        self.world_size = world_size
        self.created = time.perf_counter()
        self.first_step_seconds: float | None = None
        self.tokens, self.seconds, self.since = 0, 0.0, None

    def step(self, tokens: int) -> None:
        """An optimizer step ended; ``tokens`` were trained on this rank since the last one."""
        now = time.perf_counter()
        if self.since is None:
            self.first_step_seconds = now - self.created
        else:
            self.tokens += tokens
            self.seconds += now - self.since
        self.since = now

    @contextmanager
    def paused(self):
        begun = time.perf_counter()
        try:
            yield
        finally:
            if self.since is not None:
                self.since += time.perf_counter() - begun

    @property
    def tokens_per_second(self) -> float:
        """All ranks together (each rank trains on an equal share of every step)."""
        return self.tokens * self.world_size / self.seconds if self.seconds else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "tokens_per_second": self.tokens_per_second,
            "first_step_seconds": round(self.first_step_seconds or 0.0, 3),
        }
