"""``edgerun lab compare BASELINE CANDIDATE``: did latency change, beyond noise, per artifact and device?

Each side is a lab database or an ``edgerun bench --json`` file. Results are matched by
artifact name, target name and options (threads, providers, engine); repetitions on a
side are pooled. For p50 and p99 of the end-to-end latency, on the raw samples:

- the change in percent, candidate against baseline;
- a 95% bootstrap interval for that change (both sides resampled, percentile by
  nearest rank as everywhere in edgerun; seeded, so a comparison is reproducible).
  With two or more repetitions on a side the bootstrap is hierarchical (repetitions,
  then samples), so the interval also covers run-to-run drift; with one it covers
  sampling noise only, and the reason says so;
- for p50 also a one-sided Mann-Whitney U test (normal approximation with tie
  correction): is the candidate's latency stochastically larger?

A metric *regressed* when its change is over the threshold (default 5%) **and** the
whole bootstrap interval is above zero (and, for p50, the U test's p < alpha, default
0.01). Noise moves the estimate but leaves zero inside the interval; a real slowdown
moves the interval. A p99 from fewer samples than it needs to be valid (662, the
LoadGen rule) is reported and never gated on. Native-binary results carry no raw
samples: they are listed, not tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import LabError

__all__ = ["Comparison", "MetricChange", "compare_files", "compare_samples", "mann_whitney_greater"]

METRICS = (("p50", 50.0), ("p99", 99.0))
MAX_RESAMPLED = 4_000_000  # samples per side drawn by the bootstrap, to bound memory and time
HIERARCHICAL_ROUNDS = 600  # rounds of the (looped) two-level bootstrap


@dataclass(frozen=True)
class MetricChange:
    metric: str
    baseline_ns: int
    candidate_ns: int
    change_pct: float
    ci95_pct: tuple[float, float]
    valid: bool  # enough samples on both sides for this percentile
    verdict: str  # regression | improvement | no change | unclear | not-valid


@dataclass(frozen=True)
class Comparison:
    artifact: str
    target: str
    options: str
    n_baseline: int
    n_candidate: int
    metrics: tuple[MetricChange, ...]
    mann_whitney_p: float | None
    verdict: str  # regression | improvement | no change | not comparable
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) and the sizes of tied groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    _, starts, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = starts + (counts + 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(average, counts)
    return ranks, counts


def mann_whitney_greater(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """One-sided p-value that ``candidate`` tends to be larger (normal approximation, tie-corrected)."""
    n_b, n_c = baseline.size, candidate.size
    ranks, ties = _ranks(np.concatenate([baseline, candidate]).astype(np.float64))
    u = ranks[n_b:].sum() - n_c * (n_c + 1) / 2.0
    n = n_b + n_c
    variance = n_b * n_c / 12.0 * ((n + 1) - float((ties**3 - ties).sum()) / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n_b * n_c / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


Side = Sequence[np.ndarray]  # one array of total-latency samples (ns) per repetition


def _quantiles(samples: np.ndarray, q: float, rng: np.random.Generator, rounds: int) -> np.ndarray:
    picks = samples[rng.integers(0, samples.size, size=(rounds, samples.size))]
    return np.quantile(picks, q / 100.0, axis=1, method="inverted_cdf")


def _bootstrap(side: Side, q: float, rng: np.random.Generator, rounds: int) -> np.ndarray:
    """Bootstrap distribution of a side's percentile. With several repetitions it is hierarchical:
    repetitions are drawn with replacement, then samples within each, so the interval also
    covers run-to-run drift (a busier machine, a warmer board), not only sampling noise."""
    if len(side) == 1:
        return _quantiles(side[0], q, rng, rounds)
    out = np.empty(min(rounds, HIERARCHICAL_ROUNDS))
    for b in range(out.size):
        chosen = [side[i] for i in rng.integers(0, len(side), len(side))]
        draw = np.concatenate([part[rng.integers(0, part.size, part.size)] for part in chosen])
        out[b] = np.quantile(draw, q / 100.0, method="inverted_cdf")
    return out


def _verdict(name: str, change: float, ci: tuple[float, float], valid: bool, threshold_pct: float, mw_p: float,
             alpha: float) -> str:  # fmt: skip
    slower = mw_p < alpha if name == "p50" else True
    faster = (1.0 - mw_p) < alpha if name == "p50" else True
    if not valid:
        return "not-valid"
    if change > threshold_pct and ci[0] > 0 and slower:
        return "regression"
    if change < -threshold_pct and ci[1] < 0 and faster:
        return "improvement"
    return "unclear" if abs(change) > threshold_pct else "no change"


def _metric(name: str, q: float, base: Side, cand: Side, threshold_pct: float, mw_p: float, alpha: float,
            rng: np.random.Generator) -> MetricChange:  # fmt: skip
    from edgerun.measure.stats import min_samples

    pooled_b, pooled_c = np.concatenate(base), np.concatenate(cand)
    b = float(np.quantile(pooled_b, q / 100.0, method="inverted_cdf"))
    c = float(np.quantile(pooled_c, q / 100.0, method="inverted_cdf"))
    rounds = max(200, min(2000, MAX_RESAMPLED // max(pooled_b.size, pooled_c.size)))
    deltas = (_bootstrap(cand, q, rng, rounds) - _bootstrap(base, q, rng, rounds)) / b * 100.0
    lo, hi = (float(x) for x in np.percentile(deltas, (2.5, 97.5)))
    change = (c - b) / b * 100.0
    valid = min(pooled_b.size, pooled_c.size) >= min_samples(q)
    verdict = _verdict(name, change, (lo, hi), valid, threshold_pct, mw_p, alpha)
    return MetricChange(name, round(b), round(c), change, (lo, hi), valid, verdict)


def compare_samples(
    baseline: np.ndarray | Side,
    candidate: np.ndarray | Side,
    threshold_pct: float = 5.0,
    alpha: float = 0.01,
    seed: int = 0,
) -> tuple[tuple[MetricChange, ...], float]:
    """p50 and p99 changes of ``candidate`` against ``baseline``, and the U test's p.

    Each side is an array of ns samples, or a list of arrays, one per repetition.
    """
    base = [baseline] if isinstance(baseline, np.ndarray) else list(baseline)
    cand = [candidate] if isinstance(candidate, np.ndarray) else list(candidate)
    rng = np.random.default_rng(seed)
    mw_p = mann_whitney_greater(np.concatenate(base), np.concatenate(cand))
    metrics = tuple(_metric(name, q, base, cand, threshold_pct, mw_p, alpha, rng) for name, q in METRICS)
    return metrics, mw_p


def _key(result: dict[str, Any]) -> tuple[str, str, str]:
    config = result.get("config") or {}
    target = (result.get("target") or {}).get("name", "local")
    options = [f"threads={config['threads']}"] if config.get("threads") is not None else []
    options += [f"providers={','.join(config['providers'])}"] if config.get("providers") else []
    options += [f"engine={config['engine']}"] if config.get("engine") else []
    return result.get("artifact", {}).get("name", "?"), target, " ".join(options)


def _total_samples(result: dict[str, Any]) -> np.ndarray | None:
    samples = result.get("samples_ns")
    if not samples:
        return None
    return (
        np.asarray(samples["pre"], np.int64)
        + np.asarray(samples["infer"], np.int64)
        + np.asarray(samples["post"], np.int64)
    )


def load_side(path: str | Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Results of a lab database or a bench JSON file, grouped by (artifact, target, options); ok ones only."""
    path = Path(path)
    if not path.is_file():
        raise LabError(f"{path}: no such file (expected a lab database or an `edgerun bench --json` file)")
    if path.suffix == ".json":
        from edgerun.bench.result import read_result_file

        try:
            results = read_result_file(str(path))["results"]
        except ValueError as exc:
            raise LabError(f"{path}: {exc}") from exc
    else:
        from edgerun.lab.store import LabStore

        store = LabStore(path, create=False)
        results = [r.result for r in store.results()]
        store.close()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        if result.get("status") == "ok":
            groups.setdefault(_key(result), []).append(result)
    return groups


def _pair(key: tuple[str, str, str], base: list[dict[str, Any]], cand: list[dict[str, Any]], threshold_pct: float,
          alpha: float) -> Comparison:  # fmt: skip
    b = [s for s in map(_total_samples, base) if s is not None]
    c = [s for s in map(_total_samples, cand) if s is not None]
    if not b or not c:
        return Comparison(*key, 0, 0, (), None, "not comparable", "no raw samples (native-binary results): not tested")
    base_ns, cand_ns = np.concatenate(b), np.concatenate(c)
    metrics, mw_p = compare_samples(b, c, threshold_pct, alpha)
    verdicts = {m.verdict for m in metrics}
    verdict = "regression" if "regression" in verdicts else "improvement" if "improvement" in verdicts else "no change"
    single = " (one repetition on a side: the interval covers sampling noise, not run-to-run drift)"
    reason = "; ".join(
        f"{m.metric} {m.change_pct:+.1f}% [{m.ci95_pct[0]:+.1f}, {m.ci95_pct[1]:+.1f}] {m.verdict}" for m in metrics
    )
    if min(len(b), len(c)) < 2:
        reason += single
    return Comparison(*key, base_ns.size, cand_ns.size, metrics, mw_p, verdict, reason)


def compare_files(
    baseline: str | Path, candidate: str | Path, threshold_pct: float = 5.0, alpha: float = 0.01
) -> list[Comparison]:
    """Every (artifact, target, options) present on both sides, compared; the others are left out."""
    base, cand = load_side(baseline), load_side(candidate)
    return [_pair(key, base[key], cand[key], threshold_pct, alpha) for key in sorted(base.keys() & cand.keys())]
