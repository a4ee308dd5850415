"""Real-time budgets and the verdicts judged against them.

A *hard* budget is met only if every end-to-end inference finished under it
(one miss fails it). A *soft* budget is met if the chosen percentile (default
p99) of the latencies is under it, and that percentile has enough samples
behind it to be valid (see ``edgerun.measure.stats``). Everything here is a
pure function of samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import UsageError
from edgerun.measure.stats import (
    as_samples_ns,
    min_samples,
    percentile_key,
    percentile_nearest_rank,
)

if TYPE_CHECKING:  # annotations only: both modules sit above this one
    from edgerun.measure.memory import MemoryReport
    from edgerun.profiles import DeviceProfile

__all__ = [
    "DEFAULT_MAX_RAM_FRACTION",
    "Budget",
    "Verdict",
    "allowed_misses",
    "judge_hard",
    "judge_peak_rss",
    "judge_size",
    "judge_soft",
    "limit_ns",
    "memory_verdicts",
    "overall",
]


@dataclass(frozen=True)
class Budget:
    """Latency budgets in milliseconds (human units: they come from TOML and the CLI)."""

    soft_ms: float = 100.0
    hard_ms: float = 10.0
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not (self.soft_ms > 0 and self.hard_ms > 0):
            raise UsageError(f"budgets must be positive, got soft={self.soft_ms} hard={self.hard_ms}")
        if not 0 < self.percentile < 100:
            raise UsageError(f"budget percentile must be in (0, 100), got {self.percentile}")


# ---------------------------------------------------------------------------
# Verdicts
#
# "Under the budget" means strictly less than it, everywhere in this module:
# "soft < 100 ms" is met by 99.999 ms and missed by exactly 100 ms. The same
# strict rule applies to model size against its limit and its ideal.
# ---------------------------------------------------------------------------

STATUSES = ("pass", "fail", "not-valid")
_BYTES_PER_MB = 1_000_000  # decimal megabytes, as app stores and vendors report sizes


@dataclass(frozen=True)
class Verdict:
    """The outcome of judging one measurement against one limit.

    ``status`` is "pass", "fail" or "not-valid" (too little data to judge:
    never to be read as a pass). ``measured`` and ``limit`` are in ``unit``
    (human units: "ms", "MB"); ``miss_rate`` is the fraction of samples at or
    over the limit, where that means something; ``n`` is the sample count
    (0 for a verdict that is not about samples, such as model size).
    """

    kind: str
    status: str
    measured: float | None
    limit: float | None
    unit: str
    reason: str
    miss_rate: float | None = None
    n: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise UsageError(f"verdict status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def valid(self) -> bool:
        return self.status != "not-valid"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field plus the derived ``passed`` and ``valid``."""
        return {
            "kind": self.kind,
            "status": self.status,
            "passed": self.passed,
            "valid": self.valid,
            "measured": self.measured,
            "limit": self.limit,
            "unit": self.unit,
            "reason": self.reason,
            "miss_rate": self.miss_rate,
            "n": self.n,
        }


def limit_ns(limit_ms: float) -> int:
    """The smallest whole ns count that is NOT under ``limit_ms``.

    For integer samples, ``sample < limit_ms`` holds iff ``sample_ns <
    limit_ns(limit_ms)``. Exact rational arithmetic avoids float noise
    (0.0158 ms * 1e6 is 15800.000000000002 in floating point, which would let a
    15800 ns sample pass although it is exactly at the limit).
    """
    return math.ceil(Fraction(str(float(limit_ms))) * 1_000_000)


def _fmt_ms(value_ns: float) -> str:
    return f"{value_ns / 1e6:.3f} ms"


def _no_samples(kind: str, limit_ms: float) -> Verdict:
    return Verdict(kind, "not-valid", None, limit_ms, "ms", "no samples to judge", None, 0)


def judge_hard(samples_ns: Iterable[int], budget: Budget, *, kind: str = "hard") -> Verdict:
    """Judge integer-ns latencies against ``budget.hard_ms``: every one must be under it.

    One sample at or over the limit fails the verdict. ``measured`` is the
    worst sample in ms. No samples -> "not-valid".
    """
    array = as_samples_ns(samples_ns)
    if array.size == 0:
        return _no_samples(kind, budget.hard_ms)
    n = int(array.size)
    worst_ns = int(array.max())
    misses = int(np.count_nonzero(array >= limit_ns(budget.hard_ms)))
    limit = f"{budget.hard_ms:g} ms hard budget"
    if misses == 0:
        status, reason = "pass", f"all {n} samples under the {limit} (worst {_fmt_ms(worst_ns)})"
    else:
        status = "fail"
        reason = f"{misses} of {n} samples at or over the {limit} (worst {_fmt_ms(worst_ns)})"
    return Verdict(kind, status, worst_ns / 1e6, budget.hard_ms, "ms", reason, misses / n, n)


def allowed_misses(p: float, n: int) -> int:
    """How many of ``n`` samples may be at or over a limit with the nearest-rank ``p``-th percentile under it.

    The nearest-rank percentile is the sample at rank r = ceil(p/100 * n) of the
    ascending samples (``percentile_nearest_rank``). It is under the limit iff at
    least r samples are, i.e. iff at most n - r samples miss. For p99 at the
    minimum valid count of 662: r = ceil(655.38) = 656, so at most 6 may miss and
    7 misses fail it. The rank uses the same exact rational arithmetic as
    ``percentile_nearest_rank`` (p99.9 at n=1000 gives r = 999, not 1000).
    """
    if n < 1:
        raise UsageError(f"allowed_misses needs n >= 1, got {n}")
    if not 0 < p <= 100:
        raise UsageError(f"percentile must be in (0, 100], got {p}")
    return n - math.ceil(Fraction(str(float(p))) * n / 100)


def judge_soft(samples_ns: Iterable[int], budget: Budget, *, kind: str = "soft") -> Verdict:
    """Judge integer-ns latencies against ``budget.soft_ms`` at ``budget.percentile``.

    Pass iff the nearest-rank percentile is under the limit AND there are at
    least N = ``min_samples(percentile)`` samples. With fewer samples:

    - "fail" when the misses already exceed ``allowed_misses(p, N)`` (7 or more
      for p99, N = 662): every run of N samples that contains these fails,
      whatever the unseen samples are, so more samples of a minimum-length run
      cannot change the verdict. (A run far longer than N could dilute the
      misses; N is the length the validity rule asks for, so it is the one
      judged.)
    - "not-valid" otherwise, including when every sample is under the limit: a
      pass is never certain early, since the unseen samples could miss.

    ``measured`` is the percentile of the samples in hand, in ms; ``miss_rate``
    the fraction of samples at or over the limit.
    """
    array = as_samples_ns(samples_ns)
    if array.size == 0:
        return _no_samples(kind, budget.soft_ms)
    n = int(array.size)
    soft_limit_ns = limit_ns(budget.soft_ms)
    misses = int(np.count_nonzero(array >= soft_limit_ns))
    value_ns = int(percentile_nearest_rank(np.sort(array), budget.percentile))
    needed = min_samples(budget.percentile)
    name = percentile_key(budget.percentile)
    limit = f"{budget.soft_ms:g} ms soft budget"
    if n < needed:
        may_miss = allowed_misses(budget.percentile, needed)
        if misses > may_miss:
            status = "fail"
            reason = (
                f"{misses} of {n} missed the {limit}; with {needed} samples (the fewest a valid {name} needs) "
                f"at most {may_miss} may miss, so the {name} verdict is a certain fail"
            )
        else:
            status = "not-valid"
            reason = (
                f"{name} needs {needed} samples, have {n} ({name} = {_fmt_ms(value_ns)}; "
                f"{misses} missed, {may_miss} of {needed} may)"
            )
    elif value_ns < soft_limit_ns:
        status, reason = "pass", f"{name} = {_fmt_ms(value_ns)} is under the {limit}"
    else:
        status, reason = "fail", f"{name} = {_fmt_ms(value_ns)} is at or over the {limit}"
    return Verdict(kind, status, value_ns / 1e6, budget.soft_ms, "ms", reason, misses / n, n)


def judge_size(size_bytes: int, limit_bytes: int, ideal_bytes: int | None = None) -> Verdict:
    """Judge a model file's size in bytes: pass iff under ``limit_bytes``.

    ``measured`` and ``limit`` are reported in decimal MB (10**6 bytes). A
    size under the limit but at or over ``ideal_bytes`` still passes; the
    reason says so. Raises ValueError for a negative size, a non-positive
    limit, or an ideal outside (0, limit_bytes].
    """
    if size_bytes < 0 or limit_bytes <= 0:
        raise UsageError(f"need size_bytes >= 0 and limit_bytes > 0, got {size_bytes}, {limit_bytes}")
    if ideal_bytes is not None and not 0 < ideal_bytes <= limit_bytes:
        raise UsageError(f"ideal_bytes must be in (0, limit_bytes={limit_bytes}], got {ideal_bytes}")
    size, limit = f"{size_bytes / _BYTES_PER_MB:.3f} MB", f"{limit_bytes / _BYTES_PER_MB:g} MB"
    if size_bytes >= limit_bytes:
        status, reason = "fail", f"model is {size}, at or over the {limit} limit"
    elif ideal_bytes is not None and size_bytes >= ideal_bytes:
        ideal = f"{ideal_bytes / _BYTES_PER_MB:g} MB"
        status = "pass"
        reason = f"model is {size}: under the {limit} limit but at or over the {ideal} ideal"
    else:
        status, reason = "pass", f"model is {size}, under the {limit} limit"
    return Verdict("model_size", status, size_bytes / _BYTES_PER_MB, limit_bytes / _BYTES_PER_MB, "MB", reason)


def overall(verdicts: Iterable[Verdict]) -> str:
    """Combine verdicts: "fail" if any failed, else "not-valid" if any was, else "pass".

    No verdicts at all is "not-valid": nothing was judged, so nothing passed.
    """
    statuses = {v.status for v in verdicts}
    if "fail" in statuses:
        return "fail"
    if "not-valid" in statuses or not statuses:
        return "not-valid"
    return "pass"


# --- memory: a measured report (edgerun.measure.memory) against a device profile -----------------

# Heuristic, not a standard: one inference process should stay under a quarter of the
# device's RAM. The rest is for the OS (Android's system services alone take 1.5-3 GB of
# 8), the app's own UI/camera/pre-processing buffers, and on Jetson the GPU, which shares
# the same RAM and whose buffers miss RSS. Pass max_ram_fraction for a dedicated box.
DEFAULT_MAX_RAM_FRACTION = 0.25

_MIB = 1024 * 1024


def _mib(value_bytes: float) -> str:
    return f"{value_bytes / _MIB:.1f} MiB"


def judge_peak_rss(report: MemoryReport, ram_bytes: int, max_ram_fraction: float) -> Verdict:
    """Peak RSS against ``max_ram_fraction`` of ``ram_bytes``, strictly under, in MiB.

    A peak that includes loading is still judged: loading happens on the device too, so
    a pass is safe and a fail is real (the reason says which peak it was). "not-valid"
    when no peak was measured, or when the process already used the whole allowance
    before the model was loaded (a host-side interpreter measured against an MCU's SRAM
    says nothing about the model).
    """
    if not 0 < max_ram_fraction <= 1:
        raise UsageError(f"max_ram_fraction must be in (0, 1], got {max_ram_fraction}")
    limit_bytes = ram_bytes * max_ram_fraction
    limit = f"{max_ram_fraction:.0%} of {_mib(ram_bytes)} RAM ({_mib(limit_bytes)}, a heuristic)"
    peak = report.peak_rss_steady_bytes

    def verdict(status: str, reason: str) -> Verdict:
        measured = None if peak is None else peak / _MIB
        return Verdict("peak_rss", status, measured, limit_bytes / _MIB, "MiB", reason)

    if peak is None:
        return verdict("not-valid", f"no peak RSS measured ({report.peak_method})")
    baseline = report.rss_before_load_bytes
    if baseline is not None and baseline >= limit_bytes:
        why = f"the process used {_mib(baseline)} before the model was loaded, already at or over {limit}"
        return verdict("not-valid", why)
    which = "peak RSS including loading" if report.peak_includes_loading else "steady-state peak RSS"
    which += f" ({report.peak_method})"
    if peak < limit_bytes:
        return verdict("pass", f"{which} {_mib(peak)} is under {limit}")
    return verdict("fail", f"{which} {_mib(peak)} is at or over {limit}")


def memory_verdicts(
    report: MemoryReport, profile: DeviceProfile, *, max_ram_fraction: float = DEFAULT_MAX_RAM_FRACTION
) -> dict[str, Verdict]:
    """``{"peak_rss": ..., "model_size": ...}`` for one report against one device profile.

    ``peak_rss`` uses ``judge_peak_rss`` with ``profile.ram_bytes`` (see
    ``DEFAULT_MAX_RAM_FRACTION`` for why a quarter); ``model_size`` is ``judge_size``
    against ``profile.limits`` ("not-valid" when the file size is unknown).
    """
    limits = profile.limits
    if report.model_file_bytes is None:
        limit_mb = limits.model_size_limit_bytes / 1_000_000
        size = Verdict("model_size", "not-valid", None, limit_mb, "MB", "model file size unknown")
    else:
        size = judge_size(report.model_file_bytes, limits.model_size_limit_bytes, limits.model_size_ideal_bytes)
    return {"peak_rss": judge_peak_rss(report, profile.ram_bytes, max_ram_fraction), "model_size": size}
