"""Latency statistics: nearest-rank percentiles, their validity, summaries, CIs.

Everything here is a pure function of integer-nanosecond samples (or, for
``mean_ci95``, of any real values). Only numpy is used; in particular there is
no scipy: the Student-t quantiles ``mean_ci95`` needs come from a table plus an
asymptotic expansion.

Percentiles are *nearest-rank* on the raw samples (the value at rank
``ceil(p/100 * n)`` of the sorted samples), as MLPerf LoadGen reports them: the
result is always a latency that was actually measured, never an interpolation.
A percentile with too few samples behind it is computed but marked not valid
(see ``min_samples``); callers must never turn a not-valid value into a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from edgerun.errors import MeasurementError, UsageError

__all__ = [
    "EARLY_STOP_ALPHA",
    "PERCENTILES",
    "PercentileValue",
    "Stats",
    "as_samples_ns",
    "histogram",
    "mean_ci95",
    "min_samples",
    "percentile_key",
    "percentile_nearest_rank",
    "quantile_ci95",
    "stability",
    "summarize",
]

#: pyperf's rule of thumb: a standard deviation above 10% of the mean means an unstable run.
UNSTABLE_CV = 0.10

#: The percentiles every summary reports (LoadGen's summary list, less p97).
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)

#: Largest allowed probability that no sample lands above the true p-quantile.
#: See ``min_samples`` for why this value reproduces LoadGen's 64 and 662.
EARLY_STOP_ALPHA = 0.0013


def as_samples_ns(samples_ns: Iterable[int]) -> npt.NDArray[np.int64]:
    """Return ``samples_ns`` as a 1-D int64 array of non-negative nanoseconds.

    Empty input is allowed here (callers decide what "no samples" means).
    Raises ValueError for floats, negative values or a non 1-D shape: a
    latency is a whole number of nanoseconds from ``time.perf_counter_ns()``.
    """
    array = _as_array(samples_ns)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise MeasurementError(f"samples_ns must be 1-D, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise MeasurementError(f"samples_ns must be integer nanoseconds, got dtype {array.dtype}")
    if array.min() < 0:
        raise MeasurementError(f"samples_ns must be non-negative, got min {int(array.min())}")
    return array.astype(np.int64, copy=False)


def _as_array(values: Iterable[Any]) -> np.ndarray:
    """An array view of a numpy array or sequence; a one-shot iterator is listed first."""
    if isinstance(values, (np.ndarray, Sequence)):
        return np.asarray(values)
    return np.asarray(list(values))


def percentile_key(p: float) -> str:
    """The JSON key of percentile ``p``: 50.0 -> "p50", 99.9 -> "p99.9"."""
    return f"p{p:g}"


def percentile_nearest_rank(sorted_values: Sequence[Any] | np.ndarray, p: float) -> Any:
    """The nearest-rank ``p``-th percentile of ascending ``sorted_values``.

    rank = ceil(p/100 * n), value = sorted_values[rank - 1], for p in (0, 100].
    The rank is computed in exact rational arithmetic from the decimal that
    ``p`` prints as, so p=99.9 with n=1000 gives rank 999 (floating point
    would give 999.0000000000001 and round up to 1000).
    Raises ValueError for an empty sequence or p outside (0, 100].
    """
    n = len(sorted_values)
    if n == 0:
        raise MeasurementError("percentile of an empty sample set is undefined")
    if not 0 < p <= 100:
        raise UsageError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(Fraction(str(float(p))) * n / 100)
    return sorted_values[rank - 1]


def min_samples(p: float) -> int:
    """The number of samples the ``p``-th percentile needs to be valid.

    Derivation: if ``n`` independent samples are drawn, the probability that
    *none* of them lands above the true p-quantile is ``(p/100) ** n``. When
    that happens the highest sample, and so any estimate of the p-quantile,
    sits below the truth: the tail was never seen. We require that probability
    to be at most ``alpha``, which gives

        n = ceil(ln(alpha) / ln(p/100)).

    alpha is fitted to the thresholds MLPerf LoadGen publishes for its early
    stopping at confidence 0.99 (64 samples for p90, 662 for p99); this
    formula is a model that reproduces them, not LoadGen's own computation.
    Both come out exactly for every alpha in

        [0.9**64, 0.9**63) ∩ [0.99**662, 0.99**661)
          = [0.0011790, 0.0013100) ∩ [0.0012897, 0.0013028)
          = [0.0012897, 0.0013028).

    We take alpha = 0.0013 (``EARLY_STOP_ALPHA``): a round number inside that
    window, ~20% of its width from the nearer end (0.00129 also works but sits
    2% from the lower end). It gives p50 -> 10, p90 -> 64, p95 -> 130,
    p99 -> 662, p99.9 -> 6643.
    Raises ValueError for p outside (0, 100) (p100, the maximum, can never
    be bounded this way).
    """
    if not 0 < p < 100:
        raise UsageError(f"min_samples needs a percentile in (0, 100), got {p}")
    return math.ceil(math.log(EARLY_STOP_ALPHA) / math.log(p / 100.0))


@dataclass(frozen=True)
class PercentileValue:
    """One nearest-rank percentile: its value in ns and whether enough samples back it."""

    p: float
    value_ns: int
    valid: bool
    needed: int
    ci95_ns: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"value_ns": int, "valid": bool, "needed": int, "ci95_ns": [lo, hi] | None}."""
        ci = None if self.ci95_ns is None else list(self.ci95_ns)
        return {"value_ns": self.value_ns, "valid": self.valid, "needed": self.needed, "ci95_ns": ci}


@dataclass(frozen=True)
class Stats:
    """Summary of a set of integer-nanosecond samples (build it with ``summarize``)."""

    n: int
    min_ns: int
    mean_ns: float
    std_ns: float
    max_ns: int
    percentiles: tuple[PercentileValue, ...]

    def get(self, p: float) -> PercentileValue:
        """The stored percentile ``p``; KeyError (listing those stored) if absent."""
        for value in self.percentiles:
            if value.p == float(p):
                return value
        available = ", ".join(percentile_key(v.p) for v in self.percentiles)
        raise UsageError(f"{percentile_key(p)} was not computed; available: {available}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; min/max/percentile values are int ns, mean/std float ns."""
        return {
            "n": self.n,
            "min_ns": self.min_ns,
            "mean_ns": self.mean_ns,
            "std_ns": self.std_ns,
            "max_ns": self.max_ns,
            "percentiles": {percentile_key(v.p): v.to_dict() for v in self.percentiles},
        }


def summarize(
    samples_ns: Iterable[int],
    percentiles: Sequence[float] = PERCENTILES,
) -> Stats:
    """Summarize integer-nanosecond latency samples.

    Each percentile is nearest-rank and carries ``valid = n >= min_samples(p)``.
    ``std_ns`` is the sample standard deviation (ddof=1), 0.0 for one sample.
    Raises ValueError for no samples or a percentile outside (0, 100).
    """
    array = as_samples_ns(samples_ns)
    if array.size == 0:
        raise MeasurementError("cannot summarize an empty set of samples (no inference was timed)")
    ordered = np.sort(array)
    n = int(ordered.size)
    values = tuple(
        PercentileValue(
            p=float(p),
            value_ns=int(percentile_nearest_rank(ordered, p)),
            valid=n >= min_samples(p),
            needed=min_samples(p),
            ci95_ns=quantile_ci95(ordered, p),
        )
        for p in percentiles
    )
    return Stats(
        n=n,
        min_ns=int(ordered[0]),
        mean_ns=float(np.mean(ordered, dtype=np.float64)),
        std_ns=float(np.std(ordered, ddof=1, dtype=np.float64)) if n > 1 else 0.0,
        max_ns=int(ordered[-1]),
        percentiles=values,
    )


def histogram(samples_ns: Iterable[int], bins: int = 32) -> dict[str, Any]:
    """A compact, JSON-ready log-spaced histogram of integer-nanosecond samples.

    Returns {"scale": "log", "edges_ns": [int, ...], "counts": [int, ...]} with
    len(edges_ns) == len(counts) + 1. Bin i holds samples s with
    edges_ns[i] <= s < edges_ns[i+1]; the first edge is the minimum sample and
    the last is the maximum + 1, so every sample is counted once and counts sum
    to n. Edges are rounded to whole ns and duplicates dropped, so a narrow
    range may yield fewer than ``bins`` bins.
    Raises ValueError for no samples or bins < 1.
    """
    if bins < 1:
        raise UsageError(f"bins must be >= 1, got {bins}")
    array = as_samples_ns(samples_ns)
    if array.size == 0:
        raise MeasurementError("cannot build a histogram of an empty set of samples")
    low_ns, high_ns = int(array.min()), int(array.max()) + 1
    # geomspace cannot start at 0; a 0 ns sample (coarse clock) joins the first bin.
    raw_edges = np.geomspace(max(low_ns, 1), high_ns, bins + 1)
    edges_ns = np.unique(np.rint(raw_edges).astype(np.int64))
    edges_ns[0], edges_ns[-1] = low_ns, high_ns
    if edges_ns.size < 2:  # only when min == max == 0
        edges_ns = np.array([low_ns, high_ns], dtype=np.int64)
    counts, _ = np.histogram(array, bins=edges_ns)
    return {"scale": "log", "edges_ns": edges_ns.tolist(), "counts": counts.tolist()}


# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30, to 6 decimals.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959963984540054


def _t975(df: int) -> float:
    """t(0.975, df): the table up to df=30, then the Cornish-Fisher expansion.

    The expansion in 1/df around the normal quantile (Abramowitz & Stegun
    26.7.5) is within 3e-8 of the exact value for df > 30.
    """
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def mean_ci95(values: Iterable[float]) -> tuple[float, float]:
    """Student-t 95% confidence interval (low, high) of the mean of ``values``.

    Same unit as ``values`` (e.g. mJ per inference). Half-width is
    t(0.975, n-1) * s / sqrt(n) with s the sample std (ddof=1).
    Raises ValueError for fewer than 2 values or a non-finite value.
    """
    array = _as_array(values).astype(float)
    if array.ndim != 1 or array.size < 2:
        raise MeasurementError(f"mean_ci95 needs at least 2 values in a 1-D sequence, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise MeasurementError("mean_ci95 values must be finite (no NaN or inf)")
    n = int(array.size)
    mean = float(np.mean(array))
    half_width = _t975(n - 1) * float(np.std(array, ddof=1)) / math.sqrt(n)
    return (mean - half_width, mean + half_width)


def quantile_ci95(sorted_values: np.ndarray, p: float) -> tuple[int, int] | None:
    """Distribution-free 95% confidence interval of the p-quantile, from order statistics.

    The number of samples below the true p-quantile is Binomial(n, p/100), so the
    ranks j = floor(nq - z*sqrt(nq(1-q))) and k = ceil(nq + z*sqrt(nq(1-q))) (1-based,
    normal approximation to the binomial; Conover, *Practical Nonparametric
    Statistics*, 3.2) bracket it with ~95% probability. Returns (sorted[j-1],
    sorted[k-1]) in the samples' unit, or None when n is too small for the interval
    to stay inside the data (the tail has not been seen often enough to bound it).
    """
    n = len(sorted_values)
    q = float(p) / 100
    if n == 0 or not 0 < q < 1:
        return None
    spread = _Z975 * math.sqrt(n * q * (1 - q))
    j, k = math.floor(n * q - spread), math.ceil(n * q + spread)
    if j < 1 or k > n:
        return None
    return int(sorted_values[j - 1]), int(sorted_values[k - 1])


def stability(stats: Stats) -> dict[str, Any]:
    """Coefficient of variation (std / mean) and pyperf's warning when it exceeds 10%."""
    cv = stats.std_ns / stats.mean_ns if stats.mean_ns > 0 else 0.0
    warning = None
    if cv > UNSTABLE_CV:
        warning = (
            f"unstable: the standard deviation is {cv * 100:.0f}% of the mean (over {UNSTABLE_CV * 100:.0f}%); "
            "close other programs, pin the CPU frequency or raise --runs"
        )
    return {"cv": cv, "unstable": warning is not None, "warning": warning}
