"""What the fallback did: routes by reason, latencies, retries, breaker state, bytes sent.

``LatencyWindow`` keeps the recent samples that predictive routing reads (nearest-rank
quantiles over the last N samples younger than a maximum age, so a device that was
slow a minute ago gets another chance). ``FallbackMetrics`` holds counters and
millisecond-bucket histograms; ``to_dict()`` is the JSON export and ``render()``
the text that ``edgerun run --stats`` prints. Thread-safe: calls may come from
many threads and the client's event loop at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

__all__ = ["BUCKETS_MS", "FallbackMetrics", "LatencyWindow"]

BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, math.inf)


class LatencyWindow:
    """Recent latencies (ns) for routing decisions: at most ``size`` samples, none older than ``max_age_s``."""

    def __init__(self, size: int, max_age_s: float, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._samples: deque[tuple[int, int]] = deque(maxlen=size)
        self._max_age_ns = int(max_age_s * 1e9)
        self._clock_ns = clock_ns
        self._lock = threading.Lock()

    def add(self, latency_ns: int) -> None:
        with self._lock:
            self._samples.append((self._clock_ns(), int(latency_ns)))

    def quantile_ns(self, q: float) -> int | None:
        """Nearest-rank quantile (q in (0, 1]) of the recent samples; None when there are none."""
        oldest = self._clock_ns() - self._max_age_ns
        with self._lock:
            values = sorted(v for t, v in self._samples if t >= oldest)
        if not values:
            return None
        return values[max(0, math.ceil(q * len(values)) - 1)]

    def count(self) -> int:
        oldest = self._clock_ns() - self._max_age_ns
        with self._lock:
            return sum(1 for t, _ in self._samples if t >= oldest)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS_MS)
        self.n = 0
        self.sum_ms = 0.0

    def add(self, ms: float) -> None:
        self.n += 1
        self.sum_ms += ms
        self.counts[next(i for i, b in enumerate(BUCKETS_MS) if ms <= b)] += 1

    def to_dict(self) -> dict[str, Any]:
        # Cumulative, Prometheus style: each bucket counts samples <= its bound.
        cumulative, total = {}, 0
        for bound, c in zip(BUCKETS_MS, self.counts):
            total += c
            cumulative["+Inf" if math.isinf(bound) else f"{bound:g}"] = total
        return {"count": self.n, "sum_ms": round(self.sum_ms, 6), "buckets_le_ms": cumulative}


class FallbackMetrics:
    """Counters and histograms for one Router (and its client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: Counter[str] = Counter()  # route -> calls
        self.reasons: Counter[str] = Counter()  # "route:reason-code" -> calls
        self.attempts: Counter[str] = Counter()  # remote attempt outcome -> count
        self.counters: Counter[str] = Counter()  # retries, hedges, soft/hard misses, bytes sent, ...
        self._hist = {"local": _Histogram(), "remote": _Histogram()}
        self.breaker_state: Callable[[], str] = lambda: "closed"

    def route(self, route: str, code: str) -> None:
        with self._lock:
            self.routes[route] += 1
            self.reasons[f"{route}:{code}"] += 1

    def latency(self, which: str, latency_ns: int) -> None:
        with self._lock:
            self._hist[which].add(latency_ns / 1e6)

    def attempt(self, outcome: str, bytes_sent: int) -> None:
        with self._lock:
            self.attempts[outcome] += 1
            self.counters["remote_bytes_sent"] += bytes_sent

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def to_dict(self) -> dict[str, Any]:
        from edgerun.fallback.breaker import STATE_CODES

        state = self.breaker_state()
        with self._lock:
            return {
                "routes": dict(self.routes),
                "route_reasons": dict(self.reasons),
                "remote_attempts": dict(self.attempts),
                "retries": self.counters["retries"],
                "hedges": self.counters["hedges"],
                "soft_budget_misses": self.counters["soft_budget_misses"],
                "hard_budget_misses": self.counters["hard_budget_misses"],
                "remote_bytes_sent": self.counters["remote_bytes_sent"],
                "breaker_state": state,
                "breaker_state_code": STATE_CODES[state],
                "local_latency_ms": self._hist["local"].to_dict(),
                "remote_latency_ms": self._hist["remote"].to_dict(),
            }

    def render(self) -> str:
        d = self.to_dict()
        lines = ["fallback stats"]
        lines.append("  routes        " + (", ".join(f"{k} {v}" for k, v in sorted(d["routes"].items())) or "none"))
        for key, n in sorted(d["route_reasons"].items()):
            lines.append(f"    {key:<40} {n}")
        attempts = ", ".join(f"{k} {v}" for k, v in sorted(d["remote_attempts"].items())) or "none"
        lines.append(f"  remote tries  {attempts}; retries {d['retries']}; hedges {d['hedges']}")
        lines.append(f"  budget misses soft {d['soft_budget_misses']}, hard {d['hard_budget_misses']}")
        lines.append(f"  breaker       {d['breaker_state']}; bytes sent {d['remote_bytes_sent']}")
        for which in ("local", "remote"):
            h = d[f"{which}_latency_ms"]
            if h["count"]:
                mean = h["sum_ms"] / h["count"]
                filled, below = [], 0
                for bound, cumulative in h["buckets_le_ms"].items():
                    if cumulative > below:  # per bucket, not cumulative: easier to read
                        filled.append(f"<={bound} ms: {cumulative - below}")
                    below = cumulative
                lines.append(f"  {which:<6} ms     n={h['count']} mean={mean:.3f}  ({', '.join(filled)})")
        return "\n".join(lines)
