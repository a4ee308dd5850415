"""Energy of a measurement window from a probe's Trace, and the idle-baselined energy report.

How a window's energy is computed and reported:

- power traces (W): trapezoidal integral, clipped exactly to [start, end] with linear
  interpolation at the edges;
- energy traces (cumulative J): the counter's difference at the window edges
  (interpolated), with wrap-around corrected (a RAPL counter wraps at ``max_energy_range_uj``);
- a window the sensor cannot resolve (too few samples inside, shorter than a few sample
  periods, or not covered by the trace at all) is reported as not valid, never silently;
- the idle power measured right before and right after the run is subtracted:
  E_net = E - P_idle * (t1 - t0); per inference = E / N, with a 95% t-interval over
  repeated windows;
- an estimate is not valid when its idle baseline is not idle (``idle_baseline_problems``):
  idle power within ``IDLE_MARGIN`` (5%) of the run windows' mean power, or, for an
  estimate from machine-wide CPU time (whose baseline *is* other processes' load), other
  processes above ``OTHER_LOAD_MAX`` (10%) of all logical CPUs' time in an idle window.
  For a measured probe the same findings are notes, not a verdict: a constant reading can
  be a true "no measurable cost at this scope", and a meter's scope (a board, a rail,
  another device on a serial meter) may not hold this machine's CPUs.

All times are ``time.perf_counter_ns()`` integers, energies joules, powers watts; the
report converts to mJ per inference only in ``to_dict()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerun.errors import MeasurementError, UsageError
from edgerun.measure.stats import mean_ci95
from edgerun.power.base import PowerProbe, Trace

__all__ = [
    "IDLE_MARGIN",
    "MIN_PERIODS_IN_WINDOW",
    "MIN_SAMPLES_IN_WINDOW",
    "EnergyReport",
    "WindowEnergy",
    "WindowResult",
    "OTHER_LOAD_MAX",
    "counter_delta",
    "idle_baseline_problems",
    "integrate_power",
    "measure_energy",
    "report_from_trace",
    "unwrap_counter",
    "window_energy",
]

#: A window needs this many samples inside it (edges included) to be valid: with fewer,
#: its energy is mostly interpolation across a single sample interval.
MIN_SAMPLES_IN_WINDOW = 3
#: ...and must last at least this many nominal sample periods of the sensor.
MIN_PERIODS_IN_WINDOW = 3
#: The idle baseline is not idle when the run windows' mean power exceeds the idle power
#: by less than this fraction of it: the net figure is then a small difference of two
#: nearly equal numbers (a saturated host read idle = busy and reported 0.000 mJ as valid).
IDLE_MARGIN = 0.05
#: ...or when other processes used more than this share of all logical CPUs' time in an
#: idle window: their load is in the baseline, and it need not stay the same in the runs.
OTHER_LOAD_MAX = 0.10


# --------------------------------------------------------------------------- integration


def _series(t_ns: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape:
        raise MeasurementError(f"t_ns and values must be 1-D and of equal length, got {t.shape} and {v.shape}")
    if t.size < 2:
        raise MeasurementError(f"need at least 2 samples, got {t.size}")
    if np.any(np.diff(t) < 0):
        raise MeasurementError("t_ns must be non-decreasing")
    return t, v


def _check_covered(t: np.ndarray, start_ns: int, end_ns: int) -> None:
    if end_ns <= start_ns:
        raise MeasurementError(f"empty window: end_ns {end_ns} <= start_ns {start_ns}")
    if start_ns < t[0] or end_ns > t[-1]:
        raise MeasurementError(
            f"window not covered by samples: it starts {(t[0] - start_ns) / 1e6:+.3f} ms before the first "
            f"sample and ends {(end_ns - t[-1]) / 1e6:+.3f} ms after the last"
        )


def _at(t: np.ndarray, v: np.ndarray, when_ns: int, side: str) -> float:
    """Linear interpolation at ``when_ns``; at a repeated timestamp (a step sampled twice) the
    value seen from inside the window: the right limit at its start, the left limit at its end."""
    if side == "start":
        i = min(int(np.searchsorted(t, when_ns, side="right")), t.size - 1)
        j = i - 1
    else:
        i = max(int(np.searchsorted(t, when_ns, side="left")), 1)
        j = i - 1
    if t[i] == t[j]:
        return float(v[j] if side == "start" else v[i])
    # Integer ns differences first: absolute perf_counter_ns values lose precision in float64.
    fraction = float(when_ns - t[j]) / float(t[i] - t[j])
    return float(v[j] + (v[i] - v[j]) * fraction)


def integrate_power(
    t_ns: Sequence[int] | np.ndarray, watts: Sequence[float] | np.ndarray, start_ns: int, end_ns: int
) -> float:
    """Energy in joules of power samples (W at ``t_ns``) over [start_ns, end_ns], trapezoidal.

    The window is clipped exactly: the power at each edge is interpolated linearly between
    the samples around it, so the result is exact for piecewise-linear power. Raises
    ValueError when the samples do not cover the whole window (no extrapolation).
    """
    t, w = _series(t_ns, watts)
    _check_covered(t, start_ns, end_ns)
    inside = (t > start_ns) & (t < end_ns)
    times = np.concatenate(([start_ns], t[inside], [end_ns])) - start_ns
    power = np.concatenate(([_at(t, w, start_ns, "start")], w[inside], [_at(t, w, end_ns, "end")]))
    dt_s = np.diff(times).astype(np.float64) / 1e9
    return float(np.sum(0.5 * (power[1:] + power[:-1]) * dt_s))


def unwrap_counter(joules: Sequence[float] | np.ndarray, counter_max_j: float | None) -> np.ndarray:
    """A cumulative counter made monotonic: each reading lower than the previous adds ``counter_max_j``.

    Several wraps between two readings cannot be seen (the counter looks like it wrapped
    once or not at all), so the reader must read at least once per wrap period (RAPL: the
    range divided by the package power, minutes or less). Raises ValueError when the counter
    decreases and no wrap point is known.
    """
    j = np.asarray(joules, dtype=np.float64)
    drops = np.diff(j) < 0
    if not np.any(drops):
        return j
    if counter_max_j is None or not counter_max_j > 0:
        raise MeasurementError("the energy counter decreased but its wrap point (counter_max_j) is unknown")
    wraps = np.concatenate(([0.0], np.cumsum(drops, dtype=np.float64)))
    return j + wraps * counter_max_j


def counter_delta(
    t_ns: Sequence[int] | np.ndarray,
    joules: Sequence[float] | np.ndarray,
    start_ns: int,
    end_ns: int,
    counter_max_j: float | None = None,
) -> float:
    """Energy in joules of a cumulative counter over [start_ns, end_ns], with wrap-around.

    The counter's value at each edge is interpolated linearly between the reads around it
    (constant power between reads). See ``unwrap_counter`` for what a wrap can and cannot
    be detected. Raises ValueError when the reads do not cover the window.
    """
    t, j = _series(t_ns, joules)
    _check_covered(t, start_ns, end_ns)
    unwrapped = unwrap_counter(j, counter_max_j)
    return _at(t, unwrapped, end_ns, "end") - _at(t, unwrapped, start_ns, "start")


@dataclass(frozen=True)
class WindowEnergy:
    """The energy of one window of a trace, and whether the sensor could resolve it."""

    joules: float  # NaN when the trace does not cover the window
    valid: bool
    reason: str  # "" when valid
    samples: int  # samples inside [start, end]
    duration_s: float

    @property
    def mean_power_w(self) -> float:
        return self.joules / self.duration_s if self.duration_s > 0 else math.nan


def window_energy(trace: Trace, start_ns: int, end_ns: int) -> WindowEnergy:
    """Joules of ``trace`` in [start_ns, end_ns], marked not valid when the sensor cannot resolve it."""
    duration_s = (end_ns - start_ns) / 1e9
    t = np.asarray(trace.t_ns, dtype=np.int64)
    samples = int(np.count_nonzero((t >= start_ns) & (t <= end_ns)))
    try:
        if trace.kind == "power":
            joules = integrate_power(t, trace.values, start_ns, end_ns)
        elif trace.kind == "energy":
            joules = counter_delta(t, trace.values, start_ns, end_ns, trace.counter_max_j)
        else:
            raise MeasurementError(f"unknown trace kind {trace.kind!r} (expected 'power' or 'energy')")
    except ValueError as exc:
        return WindowEnergy(math.nan, False, str(exc), samples, duration_s)
    problems = _resolution_problems(t, start_ns, end_ns, samples, trace.sample_rate_hz)
    return WindowEnergy(joules, not problems, "; ".join(problems), samples, duration_s)


def _resolution_problems(t: np.ndarray, start_ns: int, end_ns: int, samples: int, rate_hz: float | None) -> list[str]:
    problems = []
    duration_s = (end_ns - start_ns) / 1e9
    if samples < MIN_SAMPLES_IN_WINDOW:
        problems.append(
            f"only {samples} samples inside the {duration_s * 1e3:.1f} ms window (need {MIN_SAMPLES_IN_WINDOW})"
        )
    if rate_hz and duration_s * rate_hz < MIN_PERIODS_IN_WINDOW:
        problems.append(
            f"the {duration_s * 1e3:.1f} ms window is shorter than {MIN_PERIODS_IN_WINDOW} sample periods "
            f"of a {rate_hz:g} Hz sensor"
        )
    inside = t[(t > start_ns) & (t < end_ns)]
    gap_ns = int(np.max(np.diff(np.concatenate(([start_ns], inside, [end_ns])))))
    if samples >= MIN_SAMPLES_IN_WINDOW and gap_ns > (end_ns - start_ns) / 2:
        # A stalled sampler: most of the window would be one interpolated straight line.
        problems.append(f"a {gap_ns / 1e6:.1f} ms gap between samples spans more than half the window")
    return problems


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class WindowResult:
    """One run window: how many inferences ran and the energy they took."""

    start_ns: int
    end_ns: int
    inferences: int
    gross_j: float
    net_j: float  # gross minus idle power times duration; NaN without a valid idle baseline
    samples: int
    valid: bool
    reason: str

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def gross_mj_per_inference(self) -> float:
        return self.gross_j * 1e3 / self.inferences if self.inferences > 0 else math.nan

    @property
    def net_mj_per_inference(self) -> float:
        return self.net_j * 1e3 / self.inferences if self.inferences > 0 else math.nan

    @property
    def mean_power_w(self) -> float:
        return self.gross_j / self.duration_s if self.duration_s > 0 else math.nan


@dataclass(frozen=True)
class EnergyReport:
    """Energy per inference over repeated windows, idle-baselined, with its provenance.

    Means and 95% t-intervals are over the valid windows' per-inference values. Every
    window's net value subtracts the same idle power, so the net interval does not include
    the baseline's own uncertainty; compare the two idle windows (``idle``) to judge it.
    """

    probe: str
    scope: str
    measured: bool
    sample_count: int
    sample_rate_hz: float | None
    idle: tuple[WindowEnergy, ...]  # before and after the run
    idle_power_w: float  # NaN when no idle window is valid
    windows: tuple[WindowResult, ...]
    gross_mj_per_inference: float  # mean over valid windows
    net_mj_per_inference: float
    gross_ci95_mj: tuple[float, float] | None  # None with fewer than 2 valid windows
    net_ci95_mj: tuple[float, float] | None
    mean_power_w: float
    valid: bool
    reason: str
    rails: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return "measured" if self.measured else "estimated"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: units in the keys, NaN as None."""
        return {
            "source": self.source,
            "probe": self.probe,
            "scope": self.scope,
            "valid": self.valid,
            "reason": self.reason,
            "gross_mj_per_inference": _num(self.gross_mj_per_inference),
            "net_mj_per_inference": _num(self.net_mj_per_inference),
            "ci95_mj": {"gross": _pair(self.gross_ci95_mj), "net": _pair(self.net_ci95_mj)},
            "mean_power_w": _num(self.mean_power_w),
            "idle_power_w": _num(self.idle_power_w),
            "inferences": sum(w.inferences for w in self.windows),
            "valid_windows": sum(w.valid for w in self.windows),
            "sample_count": self.sample_count,
            "sample_rate_hz": self.sample_rate_hz,
            "rails": list(self.rails),
            "windows": [_window_dict(w) for w in self.windows],
            "idle_windows": [_idle_dict(w) for w in self.idle],
            "notes": list(self.notes),
        }


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _pair(pair: tuple[float, float] | None) -> list[float | None] | None:
    return None if pair is None else [_num(pair[0]), _num(pair[1])]


def _window_dict(w: WindowResult) -> dict[str, Any]:
    return {
        "duration_s": w.duration_s,
        "inferences": w.inferences,
        "gross_j": _num(w.gross_j),
        "net_j": _num(w.net_j),
        "gross_mj_per_inference": _num(w.gross_mj_per_inference),
        "net_mj_per_inference": _num(w.net_mj_per_inference),
        "mean_power_w": _num(w.mean_power_w),
        "samples": w.samples,
        "valid": w.valid,
        "reason": w.reason,
    }


def _idle_dict(w: WindowEnergy) -> dict[str, Any]:
    return {
        "duration_s": w.duration_s,
        "energy_j": _num(w.joules),
        "power_w": _num(w.mean_power_w),
        "samples": w.samples,
        "valid": w.valid,
        "reason": w.reason,
    }


def _mean_and_ci(values: list[float]) -> tuple[float, tuple[float, float] | None]:
    if not values:
        return math.nan, None
    mean = float(np.mean(values))
    return mean, (mean_ci95(values) if len(values) >= 2 else None)


def idle_baseline_problems(
    idle_power_w: float, run_power_w: float, idle_other_load: Sequence[float | None] = ()
) -> list[str]:
    """Why the idle baseline is not idle (empty when it is), with the figures.

    ``idle_other_load``: per idle window, other processes' share (0..1) of all logical
    CPUs' time in it, or None where it was not read. Rules: run power - idle power
    < ``IDLE_MARGIN`` x run power; any idle window's other load > ``OTHER_LOAD_MAX``.
    """
    problems = []
    finite = math.isfinite(idle_power_w) and math.isfinite(run_power_w) and run_power_w > 0
    if finite and run_power_w - idle_power_w < IDLE_MARGIN * run_power_w:
        problems.append(
            f"the idle baseline is not idle: idle power {idle_power_w:.3f} W is within "
            f"{IDLE_MARGIN:.0%} of the run windows' {run_power_w:.3f} W, so the net figure is noise "
            "(other load on the machine, or a model too small for this probe's scope)"
        )
    for i, load in enumerate(idle_other_load):
        if load is not None and load > OTHER_LOAD_MAX:
            problems.append(
                f"the idle baseline is not idle: other processes used {load:.0%} of all CPUs' time in idle "
                f"window {i} (over {OTHER_LOAD_MAX:.0%}), and their load is in the baseline"
            )
    return problems


def report_from_trace(
    trace: Trace,
    idle_spans_ns: Sequence[tuple[int, int]],
    run_spans: Sequence[tuple[int, int, int]],
    idle_other_load: Sequence[float | None] = (),
) -> EnergyReport:
    """The EnergyReport of a finished trace: idle spans (start_ns, end_ns), run spans (start_ns, end_ns, inferences).

    ``idle_other_load`` (optional, per idle span): other processes' CPU share, see
    ``idle_baseline_problems``. An estimate whose baseline is not idle is not valid; for a
    measured trace the findings become notes (module docstring).
    """
    idle = tuple(window_energy(trace, s, e) for s, e in idle_spans_ns)
    good_idle = [w.mean_power_w for w in idle if w.valid]
    idle_power_w = float(np.mean(good_idle)) if good_idle else math.nan
    windows = tuple(_window_result(trace, span, idle_power_w) for span in run_spans)
    good = [w for w in windows if w.valid]
    gross, gross_ci = _mean_and_ci([w.gross_mj_per_inference for w in good])
    net, net_ci = _mean_and_ci([w.net_mj_per_inference for w in good])
    mean_power_w = float(np.mean([w.mean_power_w for w in good])) if good else math.nan
    problems = _report_problems(idle, windows)
    baseline = idle_baseline_problems(idle_power_w, mean_power_w, idle_other_load)
    notes = trace.notes
    if trace.measured:
        notes += tuple(f"note (not a verdict for a measured probe): {p}" for p in baseline)
    else:
        problems += baseline
    return EnergyReport(
        probe=trace.probe,
        scope=trace.scope,
        measured=trace.measured,
        sample_count=int(trace.t_ns.size),
        sample_rate_hz=trace.sample_rate_hz,
        idle=idle,
        idle_power_w=idle_power_w,
        windows=windows,
        gross_mj_per_inference=gross,
        net_mj_per_inference=net,
        gross_ci95_mj=gross_ci,
        net_ci95_mj=net_ci,
        mean_power_w=mean_power_w,
        valid=not problems,
        reason="; ".join(problems),
        rails=trace.rails,
        notes=notes,
    )


def _window_result(trace: Trace, span: tuple[int, int, int], idle_power_w: float) -> WindowResult:
    start_ns, end_ns, inferences = span
    energy = window_energy(trace, start_ns, end_ns)
    net_j = energy.joules - idle_power_w * energy.duration_s
    reasons = [energy.reason] if energy.reason else []
    if inferences <= 0:
        reasons.append("no inference ran in the window")
    if not math.isfinite(idle_power_w):
        reasons.append("no valid idle baseline, so no net energy")
    valid = energy.valid and not reasons
    return WindowResult(start_ns, end_ns, inferences, energy.joules, net_j, energy.samples, valid, "; ".join(reasons))


def _report_problems(idle: tuple[WindowEnergy, ...], windows: tuple[WindowResult, ...]) -> list[str]:
    problems = [f"idle window {i} not valid: {w.reason}" for i, w in enumerate(idle) if not w.valid]
    problems += [f"window {i} not valid: {w.reason}" for i, w in enumerate(windows) if not w.valid]
    if sum(w.valid for w in windows) < 2:
        problems.append("fewer than 2 valid windows: no confidence interval")
    return problems


def measure_energy(
    probe: PowerProbe,
    run_for: Callable[[float], int],
    *,
    windows: int = 5,
    window_s: float = 1.0,
    idle_s: float = 0.5,
) -> EnergyReport:
    """Measure energy per inference: idle baseline, ``windows`` run windows, idle baseline.

    ``run_for(seconds)`` runs inferences for about that long and returns how many it ran.
    The probe runs throughout (so its own overhead is in both the idle and the run windows
    and cancels in the net figure); the idle windows sleep ``idle_s`` each. Pick
    ``window_s`` long enough for the sensor: at least 3 sample periods, better 100.
    """
    if windows < 1 or window_s <= 0 or idle_s <= 0:
        raise UsageError(f"need windows >= 1, window_s > 0, idle_s > 0; got {windows}, {window_s}, {idle_s}")
    # A probe's first sample arrives a moment after start() (a thread's first poll, a meter's
    # first line), and its last one a moment before stop(): settle for a few sample periods
    # on both sides so the measured windows lie inside the trace instead of overhanging it.
    rate_hz = getattr(probe, "rate_hz", None) or getattr(probe, "sample_rate_hz", None) or 10.0
    settle_s = max(0.1, 3.0 / float(rate_hz))
    # Other processes' load around each idle window; not read for an estimate that counts this
    # process's CPU time only (probe.excludes_other_processes): that figure leaves it out.
    load = None if getattr(probe, "excludes_other_processes", False) else _load_reader()
    loads: list[float | None] = []
    probe.start()
    try:
        time.sleep(settle_s)
        idle_spans = [_idle_span(idle_s, load, loads)]
        run_spans = []
        for _ in range(windows):
            start_ns = time.perf_counter_ns()
            inferences = int(run_for(window_s))
            run_spans.append((start_ns, time.perf_counter_ns(), inferences))
        idle_spans.append(_idle_span(idle_s, load, loads))
        time.sleep(settle_s)
    finally:
        trace = probe.stop()
    return report_from_trace(trace, idle_spans, run_spans, loads)


def _load_reader() -> Callable[[], tuple[float, float, float]] | None:
    from edgerun.power.estimate import cpu_load_reader  # lazy: psutil only when energy is measured

    return cpu_load_reader()


def _idle_span(
    idle_s: float, load: Callable[[], tuple[float, float, float]] | None, loads: list[float | None]
) -> tuple[int, int]:
    """Sleep ``idle_s``; append other processes' share of all CPUs' time over it to ``loads``."""
    before = load() if load else None
    start_ns = time.perf_counter_ns()
    time.sleep(idle_s)
    end_ns = time.perf_counter_ns()
    after = load() if load else None
    share = None
    if before is not None and after is not None and after[2] > before[2]:
        other_s = (after[0] - before[0]) - (after[1] - before[1])
        share = min(1.0, max(0.0, other_s / (after[2] - before[2])))
    loads.append(share)
    return start_ns, end_ns
