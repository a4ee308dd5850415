"""Real-time budgets and the verdicts judged against them.

A *hard* budget is met only if every end-to-end inference finished under it
(one miss fails it). A *soft* budget is met if the chosen percentile (default
p99) of the latencies is under it, and that percentile has enough samples
behind it to be valid (see ``edgerun.measure.stats``). Everything here is a
pure function of samples.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Latency budgets in milliseconds (human units: they come from TOML and the CLI)."""

    soft_ms: float = 100.0
    hard_ms: float = 10.0
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not (self.soft_ms > 0 and self.hard_ms > 0):
            raise ValueError(f"budgets must be positive, got soft={self.soft_ms} hard={self.hard_ms}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"budget percentile must be in (0, 100), got {self.percentile}")
