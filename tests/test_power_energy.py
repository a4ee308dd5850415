"""Energy integration against analytic traces: constant, step, ramp, clipping, counter wrap, validity, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgerun.power.base import Trace
from edgerun.power.energy import (
    counter_delta,
    integrate_power,
    report_from_trace,
    unwrap_counter,
    window_energy,
)

T0_NS = 5_000_000_000_000  # a realistic perf_counter_ns origin (uptime ~83 min)
S = 1_000_000_000


def power_trace(t_ns, watts, rate_hz=100.0, measured=True) -> Trace:
    return Trace("test", "board", "power", np.asarray(t_ns, np.int64), np.asarray(watts, float), measured, rate_hz)


def irregular_times(n: int, span_s: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.5, 1.5, n - 1)
    return T0_NS + np.concatenate(([0], np.cumsum(steps) / steps.sum() * span_s * S)).astype(np.int64)


# ----------------------------------------------------------------- power traces


def test_constant_power_is_p_times_t_at_non_sample_edges():
    t = irregular_times(200, 2.0)
    start, end = T0_NS + 123_456_789, T0_NS + 1_876_543_211  # between samples
    assert integrate_power(t, np.full(t.size, 3.5), start, end) == pytest.approx(3.5 * (end - start) / 1e9, rel=1e-12)


def test_ramp_is_exact_for_the_trapezoid_rule():
    t = irregular_times(157, 3.0, seed=1)
    a_w, b_w_per_s = 2.0, 1.25

    def p(t_ns):
        return a_w + b_w_per_s * (np.asarray(t_ns) - T0_NS) / 1e9

    start, end = T0_NS + int(0.3337 * S), T0_NS + int(2.71 * S)
    t0, t1 = 0.3337, 2.71
    exact = a_w * (t1 - t0) + b_w_per_s / 2 * (t1**2 - t0**2)
    assert integrate_power(t, p(t), start, end) == pytest.approx(exact, rel=1e-9)


def test_window_inside_one_sample_interval_is_clipped_by_interpolation():
    t = [T0_NS, T0_NS + S]
    watts = [1.0, 3.0]  # ramp 1 -> 3 W over 1 s
    # [0.25, 0.5] s: P goes 1.5 -> 2.0 W, mean 1.75 W over 0.25 s
    assert integrate_power(t, watts, T0_NS + S // 4, T0_NS + S // 2) == pytest.approx(0.4375, rel=1e-12)


def test_step_sampled_at_the_step_instant_is_exact():
    t = np.array([0, 0.25, 0.5, 0.5, 0.75, 1.0]) * S + T0_NS  # the step appears twice at 0.5 s
    watts = [2, 2, 2, 5, 5, 5]
    assert integrate_power(t.astype(np.int64), watts, T0_NS, T0_NS + S) == pytest.approx(2 * 0.5 + 5 * 0.5)


def test_step_between_samples_errs_by_at_most_half_a_period():
    period_s, step_s = 0.01, 0.5043
    t = (T0_NS + np.arange(0, 101) * period_s * S).astype(np.int64)
    watts = np.where((t - T0_NS) / 1e9 < step_s, 2.0, 5.0)
    exact = 2 * step_s + 5 * (1.0 - step_s)
    got = integrate_power(t, watts, T0_NS, T0_NS + S)
    assert abs(got - exact) <= 3.0 * period_s / 2 + 1e-12
    assert got != pytest.approx(exact, abs=1e-9)  # it is an approximation, and the bound above is what we claim


def test_window_not_covered_raises_and_window_energy_says_not_valid():
    t = irregular_times(50, 1.0)
    with pytest.raises(ValueError, match="not covered"):
        integrate_power(t, np.ones(t.size), T0_NS - 1, T0_NS + S // 2)
    with pytest.raises(ValueError, match="not covered"):
        integrate_power(t, np.ones(t.size), T0_NS, T0_NS + 2 * S)
    result = window_energy(power_trace(t, np.ones(t.size)), T0_NS + S // 2, T0_NS + 2 * S)
    assert not result.valid and math.isnan(result.joules) and "not covered" in result.reason


def test_bad_series_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        integrate_power([1, 2, 3], [1.0, 2.0], 1, 2)
    with pytest.raises(ValueError, match="non-decreasing"):
        integrate_power([3, 2, 1], [1.0, 1.0, 1.0], 1, 2)
    with pytest.raises(ValueError, match="empty window"):
        integrate_power([1, 2, 3], [1.0, 1.0, 1.0], 2, 2)


# ----------------------------------------------------------------- counters


def wrapping_counter(power_w: float, max_j: float, period_s: float, span_s: float, offset_j: float = 0.0):
    t_s = np.arange(0.0, span_s + 1e-12, period_s)
    return (T0_NS + t_s * S).astype(np.int64), (offset_j + power_w * t_s) % max_j


def test_counter_delta_corrects_wraps():
    t, j = wrapping_counter(power_w=5.0, max_j=3.0, period_s=0.02, span_s=2.0, offset_j=2.5)
    assert np.sum(np.diff(j) < 0) >= 3  # the test really crosses several wraps
    start, end = T0_NS + int(0.111 * S), T0_NS + int(1.913 * S)
    assert counter_delta(t, j, start, end, counter_max_j=3.0) == pytest.approx(5.0 * 1.802, rel=1e-9)


def test_counter_that_decreases_without_a_wrap_point_is_an_error():
    t, j = wrapping_counter(power_w=5.0, max_j=3.0, period_s=0.02, span_s=1.0)
    with pytest.raises(ValueError, match="wrap point"):
        counter_delta(t, j, T0_NS, T0_NS + S // 2)


def test_several_wraps_between_reads_cannot_be_seen():
    # Documented limitation: 1.5 wraps per read interval looks like half a wrap backwards.
    t, j = wrapping_counter(power_w=4.5, max_j=3.0, period_s=1.0, span_s=4.0)
    got = counter_delta(t, j, T0_NS, T0_NS + 4 * S, counter_max_j=3.0)
    assert got != pytest.approx(18.0, rel=0.05)


def test_unwrap_counter_is_monotonic():
    unwrapped = unwrap_counter([2.0, 2.9, 0.1, 1.0, 2.95, 0.05], 3.0)
    assert np.all(np.diff(unwrapped) > 0)
    assert unwrapped[-1] == pytest.approx(6.05)


def test_energy_trace_window_uses_the_counter():
    t, j = wrapping_counter(power_w=7.0, max_j=10.0, period_s=0.02, span_s=2.0)
    trace = Trace("rapl", "package", "energy", t, j, True, 50.0, counter_max_j=10.0)
    result = window_energy(trace, T0_NS + S // 4, T0_NS + 3 * S // 2)
    assert result.valid, result.reason
    assert result.joules == pytest.approx(7.0 * 1.25, rel=1e-9)
    assert result.mean_power_w == pytest.approx(7.0, rel=1e-9)


# ----------------------------------------------------------------- validity


def test_window_shorter_than_three_periods_is_not_valid():
    t = (T0_NS + np.arange(0, 50) * S // 5).astype(np.int64)  # 5 Hz, like the PMIC
    trace = power_trace(t, np.full(t.size, 4.0), rate_hz=5.0)
    short = window_energy(trace, T0_NS + S, T0_NS + S + S // 2)  # 0.5 s = 2.5 periods
    assert not short.valid
    assert "shorter than 3 sample periods" in short.reason
    assert short.joules == pytest.approx(2.0)  # still computed, just not trusted
    ok = window_energy(trace, T0_NS + S, T0_NS + 2 * S)  # 1 s = 5 periods, 6 samples
    assert ok.valid, ok.reason


def test_window_with_fewer_than_three_samples_is_not_valid_even_without_a_nominal_rate():
    t = (T0_NS + np.arange(0, 11) * S // 10).astype(np.int64)
    trace = power_trace(t, np.full(t.size, 4.0), rate_hz=None)
    result = window_energy(trace, T0_NS + S // 20, T0_NS + S // 4)  # holds the samples at 0.1 and 0.2 s only
    assert not result.valid and "only 2 samples inside" in result.reason
    assert window_energy(trace, T0_NS + S // 20, T0_NS + 7 * S // 20).valid


def test_a_stalled_sampler_invalidates_the_window():
    t = np.array([0, 0.05, 0.1, 0.15, 0.95, 1.0]) * S + T0_NS
    trace = power_trace(t.astype(np.int64), np.ones(6), rate_hz=20.0)
    result = window_energy(trace, T0_NS, T0_NS + S)
    assert not result.valid and "gap" in result.reason


# ----------------------------------------------------------------- report


def step_report_trace(rate_hz: float = 100.0) -> tuple[Trace, list[tuple[int, int]], list[tuple[int, int, int]]]:
    """2 W idle for 1 s, five 1 s windows at 5 W, 2 W idle for 1 s; sampled at rate_hz with the steps sampled."""
    grid = [x for x in np.arange(0, 7 + 1e-9, 1 / rate_hz) if min(abs(x - 1), abs(x - 6)) > 1e-9]
    points = [(x, 5.0 if 1 < x < 6 else 2.0) for x in grid] + [(1, 2.0), (1, 5.0), (6, 5.0), (6, 2.0)]
    points.sort(key=lambda p: p[0])  # stable: each step keeps its before/after order
    t_ns = np.array([T0_NS + round(x * S) for x, _ in points], dtype=np.int64)
    trace = power_trace(t_ns, [w for _, w in points], rate_hz=rate_hz)
    idle = [(T0_NS, T0_NS + S), (T0_NS + 6 * S, T0_NS + 7 * S)]
    runs = [(T0_NS + (1 + i) * S, T0_NS + (2 + i) * S, n) for i, n in enumerate([100, 110, 90, 100, 105])]
    return trace, idle, runs


def test_report_gross_and_net_per_inference_match_the_analytic_values():
    trace, idle, runs = step_report_trace()
    report = report_from_trace(trace, idle, runs)
    assert report.valid, report.reason
    assert report.idle_power_w == pytest.approx(2.0, rel=1e-9)
    gross = [5.0 * 1e3 / n for *_, n in runs]
    net = [3.0 * 1e3 / n for *_, n in runs]
    assert report.gross_mj_per_inference == pytest.approx(np.mean(gross), rel=1e-6)
    assert report.net_mj_per_inference == pytest.approx(np.mean(net), rel=1e-6)
    low, high = report.net_ci95_mj
    assert low < np.mean(net) < high
    assert report.mean_power_w == pytest.approx(5.0, rel=1e-6)


def test_to_dict_is_json_with_units_in_keys_and_a_source():
    trace, idle, runs = step_report_trace()
    d = report_from_trace(trace, idle, runs).to_dict()
    json.dumps(d, allow_nan=False)
    for key in ("gross_mj_per_inference", "net_mj_per_inference", "ci95_mj", "mean_power_w", "idle_power_w"):
        assert key in d
    assert d["source"] == "measured" and d["scope"] == "board" and d["probe"] == "test"
    assert set(d["ci95_mj"]) == {"gross", "net"} and len(d["windows"]) == 5 and len(d["idle_windows"]) == 2
    estimated = Trace("estimate", "estimate", "power", trace.t_ns, trace.values, measured=False, sample_rate_hz=100.0)
    assert report_from_trace(estimated, idle, runs).to_dict()["source"] == "estimated"


def test_report_with_windows_too_short_for_the_sensor_is_not_valid_and_says_why():
    trace, idle, _ = step_report_trace(rate_hz=2.0)
    runs = [(T0_NS + S + i * S // 10, T0_NS + S + (i + 1) * S // 10, 10) for i in range(5)]  # 100 ms at 2 Hz
    report = report_from_trace(trace, idle, runs)
    assert not report.valid
    assert "window 0 not valid" in report.reason and "no confidence interval" in report.reason
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["gross_mj_per_inference"] is None and d["valid_windows"] == 0
