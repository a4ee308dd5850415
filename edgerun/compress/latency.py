"""Latency of a run's artifacts, measured side by side: interleaved rounds, one median per file.

Timing each file right after it is built lets whatever the machine does meanwhile (another
export, a test beside it, frequency changes) land on one file and not another: two
byte-identical files were once reported at 0.76 and 0.46 ms. Here every file is loaded first
(one thread each), then ``rounds`` rounds run ``per_round`` inferences of each file in turn,
the order rotating by one file per round, so slow stretches of time are shared out evenly.
The figure is the median inference-stage time (``Result.times.infer_ns``: the engine call
alone) over all ``rounds * per_round`` runs of a file, with that count. No torch import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 10  # first runs allocate and pick kernels; not counted


@dataclass(frozen=True)
class Latency:
    p50_ms: float  # median of ``n`` inference-stage times, batch 1, one thread, this machine
    n: int
    rounds: int  # interleaved rounds the n runs came from (n = rounds * runs per round)
    p25_ms: float
    p75_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p50_ms, 4),
            "p25_ms": round(self.p25_ms, 4),
            "p75_ms": round(self.p75_ms, 4),
            "n": self.n,
            "rounds": self.rounds,
            "method": "interleaved with the run's other artifacts (order rotated each round), batch 1, 1 thread",
        }


def interleaved(
    paths: Sequence[Path],
    raw_x: np.ndarray,
    rounds: int = 20,
    per_round: int = 10,
    load: Callable[[Path], Any] | None = None,
) -> dict[Path, Latency]:
    """Median inference time of each artifact over ``rounds`` interleaved rounds of ``per_round`` runs.

    ``load`` opens one artifact (default ``edgerun.load(path, threads=1)``); each run feeds the next
    raw sample of ``raw_x`` (cycling), the same samples for every file.
    """
    if load is None:
        import edgerun

        def load(p: Path) -> Any:
            return edgerun.load(p, threads=1)

    runtimes = {p: load(p) for p in paths}
    for rt in runtimes.values():
        for i in range(WARMUP):
            rt.run(raw_x[i % len(raw_x)])
    times: dict[Path, list[int]] = {p: [] for p in paths}
    order = list(paths)
    for r in range(rounds):
        turn = order[r % len(order) :] + order[: r % len(order)] if order else []
        for p in turn:
            rt = runtimes[p]
            start = r * per_round
            times[p] += [rt.run(raw_x[(start + i) % len(raw_x)]).times.infer_ns for i in range(per_round)]
    out = {}
    for p, ns in times.items():
        q25, q50, q75 = np.percentile(np.asarray(ns, dtype=np.float64) / 1e6, [25, 50, 75])
        out[p] = Latency(float(q50), len(ns), rounds, float(q25), float(q75))
    return out
