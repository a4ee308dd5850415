"""The labelled estimate: P = idle + (busy - idle) * CPU utilisation, end to end through measure_energy.

The probe takes its CPU times from an injected source (``cpu_times``). A scripted source pins
the formula exactly; the real sources are checked over one sampling interval nested between
the test's own readings of the same counters, which bounds the utilisation the probe must
report whatever else the machine is doing.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from edgerun.power import measure_energy, select_probe
from edgerun.power.base import Trace
from edgerun.power.energy import IDLE_MARGIN, OTHER_LOAD_MAX, report_from_trace, window_energy
from edgerun.power.estimate import (
    SCOPE_MACHINE,
    SCOPE_PROCESS,
    EstimateProbe,
    cpu_busy_total_s,
    interval_power_w,
    process_busy_total_s,
)
from edgerun.profiles import load_profile

GENERIC = load_profile("generic-x86_64-linux")  # idle 10 W, busy 65 W
IDLE_W, BUSY_W = 10.0, 65.0
# The sampling thread waits one period (100 s) before its first read, so within a test the probe
# reads the source exactly three times: the baseline in start(), the first sample right after it,
# and the final sample in stop(). The final sample's interval therefore holds the whole workload.
ONE_INTERVAL_HZ = 0.01


def scripted(readings: Iterable[tuple[float, float]]) -> Callable[[], tuple[float, float]]:
    """A CPU-time source returning the given cumulative (busy_s, total_s) readings, one per call."""
    it = iter(readings)
    return lambda: next(it)


def test_assumptions_about_the_profile():
    assert (GENERIC.power_model.idle_w, GENERIC.power_model.busy_w) == (IDLE_W, BUSY_W)


@pytest.mark.parametrize(
    ("readings", "expected_w"),
    [
        ([(0, 0), (1, 4), (4, 8)], [10 + 55 * 0.25, 10 + 55 * 0.75]),  # u = d(busy) / d(total)
        ([(7, 7), (7, 7), (17, 11)], [IDLE_W, BUSY_W]),  # no tick yet: the initial 0; busier than total: 1
        ([(5, 0), (6, 2), (5, 3)], [10 + 55 * 0.5, IDLE_W]),  # a counter stepping back: 0, never negative
    ],
)
def test_estimate_is_the_power_model_of_the_utilisation_it_reads(readings, expected_w):
    # Reads at 0 s (open), 1 s (first sample) and 3 s (stop): intervals of 1 s and 2 s.
    ticks = iter([0, 1_000_000_000, 3_000_000_000])
    probe = EstimateProbe(
        profile=GENERIC, rate_hz=ONE_INTERVAL_HZ, cpu_times=scripted(readings), clock_ns=lambda: next(ticks)
    )
    probe.start()
    trace = probe.stop()
    # A cumulative-energy trace starting at the first sample, which already holds the first
    # interval's joules; each later interval's constant power is its J over its seconds.
    assert trace.kind == "energy"
    assert trace.values[0] == pytest.approx(expected_w[0] * 1.0, rel=1e-12)
    assert list(interval_power_w(trace)) == pytest.approx(expected_w[1:], rel=1e-12)
    assert (trace.probe, trace.scope, trace.measured) == ("estimate", SCOPE_MACHINE, False)


def test_estimate_matches_the_power_model_for_a_known_utilisation():
    # Every sample interval reads exactly 40% busy (the source counts calls, not time), so every
    # window, idle or run, is 32 W whenever and however often the sampler runs: the report's
    # idle power, mean power and per-inference energies are then known exactly.
    calls = itertools.count(1)
    probe = EstimateProbe(profile=GENERIC, rate_hz=50.0, cpu_times=lambda: (0.4 * (n := next(calls)), float(n)))

    def run_for(seconds: float) -> int:
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(0.002)  # an 'inference'; only the count matters
            count += 1
        return count

    report = measure_energy(probe, run_for, windows=3, window_s=0.2, idle_s=0.2)
    watts = IDLE_W + (BUSY_W - IDLE_W) * 0.4
    # The trace is exactly linear in time (each interval holds watts x its length), so every window
    # it covers holds watts x its duration, resolved or not. It covers them all unless stop()'s
    # bounded join timed out on a starved sampler thread and the final read was skipped: a window
    # past the trace's end is then flagged "not covered" (NaN), never clamped.
    spans = [(w.joules, w.duration_s, w.reason) for w in report.idle]
    spans += [(w.gross_j, w.duration_s, w.reason) for w in report.windows]
    for joules, duration_s, reason in spans:
        if math.isnan(joules):
            assert "window not covered by samples" in reason
        else:
            assert joules == pytest.approx(watts * duration_s, rel=1e-9)
    # The report's figures are over the windows the sampler resolved (valid: enough samples, no gap
    # over half the window). Under heavy load the sampler thread can be starved for over a second
    # (seen: a 1313.7 ms gap in a 0.2 s window); such a window is left out of the means, as the
    # report defines them, so the expectations are over the same windows (NaN when there are none).
    idle = [w for w in report.idle if w.valid]
    runs = [w for w in report.windows if w.valid]
    assert report.idle_power_w == pytest.approx(watts if idle else math.nan, rel=1e-9, nan_ok=True)
    assert report.mean_power_w == pytest.approx(watts if runs else math.nan, rel=1e-9, nan_ok=True)
    gross = [watts * w.duration_s * 1e3 / w.inferences for w in runs]
    expected = sum(gross) / len(gross) if gross else math.nan
    assert report.gross_mj_per_inference == pytest.approx(expected, rel=1e-9, nan_ok=True)
    for w in report.windows:
        if math.isfinite(w.net_j):
            assert w.net_j == pytest.approx(0.0, abs=1e-9)
    # Idle and run windows read the same utilisation (the saturated-host case): the baseline is not
    # idle, so the figure is not valid, whatever the other figures say (and an unresolved window
    # makes it not valid too, with its own reason).
    assert not report.valid
    if idle and runs:
        assert "the idle baseline is not idle: idle power 32.000 W" in report.reason
    for i, w in enumerate(report.windows):
        assert w.valid or f"window {i} not valid: {w.reason}" in report.reason
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert (d["source"], d["scope"], d["probe"]) == ("estimated", SCOPE_MACHINE, "estimate")
    assert report.measured is False
    assert any(n.startswith("ESTIMATED") and "generic-x86_64-linux" in n for n in report.notes)


def busy_loop(seconds: float) -> int:
    """Real CPU load on one core: 'inferences' of pure-Python arithmetic."""
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        total = 0
        for i in range(2000):
            total += i * i
        count += 1
    return count


def one_interval_estimate(
    probe: EstimateProbe,
    source: Callable[[], tuple[float, float]],
    workload: Callable[[], object],
    slack_s: float = 0.0,
) -> tuple[Trace, float, float]:
    """(trace, lowest, highest): the probe's trace over ``workload`` and the power model of the
    utilisation bounds the test reads from ``source`` just inside and just outside its interval.

    The probe's interval starts inside start() and ends inside stop(), so it holds the workload and
    lies within start..stop: its busy and total deltas lie between the inner and the outer ones.
    ``slack_s`` widens each delta (counters the kernel keeps in whole clock ticks per CPU).
    """
    outer0 = source()
    probe.start()
    inner0 = source()
    workload()
    inner1 = source()
    trace = probe.stop()
    outer1 = source()
    inner_busy, inner_total = inner1[0] - inner0[0], inner1[1] - inner0[1]
    outer_busy, outer_total = outer1[0] - outer0[0], outer1[1] - outer0[1]
    low_u = max(0.0, inner_busy - slack_s) / (outer_total + slack_s)
    high_u = min(1.0, (outer_busy + slack_s) / max(inner_total - slack_s, 1e-9))
    return trace, IDLE_W + (BUSY_W - IDLE_W) * low_u, IDLE_W + (BUSY_W - IDLE_W) * high_u


def test_estimate_with_real_cpu_load_of_this_process():
    # This process's CPU time over all CPUs' wall time, read with the very source the probe uses.
    # Other load on the machine changes how much CPU the loop gets, and the bounds follow it.
    cpus = os.cpu_count() or 1
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ, cpu_times=process_busy_total_s)
    trace, low, high = one_interval_estimate(probe, process_busy_total_s, lambda: busy_loop(0.2))
    assert low - 1e-9 <= interval_power_w(trace)[-1] <= high + 1e-9, (low, interval_power_w(trace)[-1], high)
    assert low > IDLE_W  # the loop ran, so an estimator stuck at idle power fails here
    assert high < BUSY_W or cpus == 1  # one busy thread of several CPUs: stuck at busy power fails
    assert any("this process's CPU time" in n for n in trace.notes)
    trace, low, high = one_interval_estimate(probe, process_busy_total_s, lambda: time.sleep(0.2))
    assert low - 1e-9 <= interval_power_w(trace)[-1] <= high + 1e-9, (low, interval_power_w(trace)[-1], high)


def test_estimate_with_real_cpu_load_machine_wide():
    # Machine-wide utilisation includes every other process, which the bounds include too. On a
    # saturated machine both runs read about 100% busy; on a quiet one the sleeping run reads low.
    default = select_probe("estimate", profile=GENERIC)
    default.start()
    trace = default.stop()  # what bench uses: this process's own CPU time (issue 13)
    assert trace.scope == SCOPE_PROCESS and "process CPU time, modelled" in trace.scope
    assert any("this process's CPU time" in n for n in trace.notes)
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ)
    # /proc/stat counts whole clock ticks per CPU, and its idle/iowait split can step back a tick.
    tick_s = (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")
    for workload in (lambda: busy_loop(0.2), lambda: time.sleep(0.2)):
        trace, low, high = one_interval_estimate(probe, cpu_busy_total_s, workload, slack_s=tick_s)
        assert low - 1e-9 <= interval_power_w(trace)[-1] <= high + 1e-9, (low, interval_power_w(trace)[-1], high)
        assert any("all logical CPUs of this machine" in n for n in trace.notes)


def test_cpu_busy_total_is_cumulative_and_bounded():
    busy0, total0 = cpu_busy_total_s()
    busy_loop(0.05)
    busy1, total1 = cpu_busy_total_s()
    assert total1 >= total0 and 0 <= busy1 - busy0 <= total1 - total0 + 1e-6


# --- rectangles over the true intervals -------------------------------------------------------

MS_NS = 1_000_000


def test_estimate_integrates_each_interval_as_a_rectangle_exactly():
    # Uneven intervals (0.1 s, 0.3 s, 0.05 s, 1 s) at utilisations 0.2, 1.0, 0.0, 0.5 -> 21, 65, 10,
    # 37.5 W. The clock and the CPU times are both scripted, so every joule is known: the whole span
    # holds 21*0.1 + 65*0.3 + 10*0.05 + 37.5*1 = 59.6 J. (Midpoint stamps with trapezoids, the old
    # way, gave 47.156 J here: each step was smeared into its neighbours' intervals.)
    ticks = iter([1 * MS_NS, 1 * MS_NS, 101 * MS_NS, 401 * MS_NS, 451 * MS_NS, 1451 * MS_NS])
    cpu = scripted([(0, 0), (0, 0), (0.2, 1), (1.2, 2), (1.2, 3), (1.7, 4)])
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ, cpu_times=cpu, clock_ns=lambda: next(ticks))
    probe.start()  # reads 1 (open) and 2 (first sample, a 0 s interval)
    for _ in range(3):
        assert probe._try_sample(None)  # reads 3..5: the sampling thread waits 100 s, so none of its own
    trace = probe.stop()  # read 6, at the stop instant
    assert list(trace.t_ns) == [1 * MS_NS, 101 * MS_NS, 401 * MS_NS, 451 * MS_NS, 1451 * MS_NS]
    assert list(interval_power_w(trace)) == pytest.approx([21.0, 65.0, 10.0, 37.5], rel=1e-12)
    assert window_energy(trace, 1 * MS_NS, 1451 * MS_NS).joules == pytest.approx(59.6, rel=1e-12)
    # A window cutting intervals takes exactly its share of each rectangle: 21*0.05 + 65*0.3 + 10*0.025.
    assert window_energy(trace, 51 * MS_NS, 426 * MS_NS).joules == pytest.approx(20.8, rel=1e-12)


# --- the idle baseline must be idle -----------------------------------------------------------


def stepped_trace(idle_w: float, run_w: float, measured: bool) -> Trace:
    """A 100 Hz cumulative-energy trace over 4 s: ``run_w`` in [1 s, 3 s), ``idle_w`` elsewhere."""
    t_ns = np.arange(0, 4001, 10, dtype=np.int64) * MS_NS
    watts = np.where((t_ns[1:] > 1000 * MS_NS) & (t_ns[1:] <= 3000 * MS_NS), run_w, idle_w)
    joules = np.concatenate(([0.0], np.cumsum(watts * 0.01)))
    return Trace("p", "estimate" if not measured else "board", "energy", t_ns, joules, measured, 100.0)


IDLE_SPANS = [(100 * MS_NS, 900 * MS_NS), (3100 * MS_NS, 3900 * MS_NS)]
RUN_SPANS = [(1000 * MS_NS, 2000 * MS_NS, 100), (2000 * MS_NS, 3000 * MS_NS, 100)]


def test_an_estimate_whose_idle_reads_as_busy_is_not_valid():
    # idle 10 W, run 10.4 W: within 5% (IDLE_MARGIN) of each other, the saturated-host signature.
    report = report_from_trace(stepped_trace(10.0, 10.4, measured=False), IDLE_SPANS, RUN_SPANS)
    assert IDLE_MARGIN == 0.05
    assert report.net_mj_per_inference == pytest.approx(4.0, rel=1e-9)  # still computed: 0.4 J / 100
    assert not report.valid
    assert "idle power 10.000 W is within 5% of the run windows' 10.400 W" in report.reason
    # 10 W against 10.6 W is a 5.7% difference: a real baseline.
    assert report_from_trace(stepped_trace(10.0, 10.6, measured=False), IDLE_SPANS, RUN_SPANS).valid


def test_an_estimate_with_other_load_in_its_idle_windows_is_not_valid():
    trace = stepped_trace(10.0, 40.0, measured=False)
    assert report_from_trace(trace, IDLE_SPANS, RUN_SPANS, (0.02, OTHER_LOAD_MAX)).valid  # at the limit: idle
    busy = report_from_trace(trace, IDLE_SPANS, RUN_SPANS, (0.02, 0.35))
    assert not busy.valid and "other processes used 35% of all CPUs' time in idle window 1" in busy.reason


def test_a_measured_probe_gets_the_same_findings_as_notes_not_a_verdict():
    # A meter reading constant power can be true ("no measurable cost at this scope").
    report = report_from_trace(stepped_trace(2.5, 2.5, measured=True), IDLE_SPANS, RUN_SPANS, (0.5, None))
    assert report.valid, report.reason
    notes = [n for n in report.notes if n.startswith("note (not a verdict")]
    assert len(notes) == 2 and "within 5%" in notes[0] and "50% of all CPUs' time in idle window 0" in notes[1]


def test_the_process_attributed_estimate_skips_the_other_load_check():
    assert EstimateProbe(profile=GENERIC, cpu_times=process_busy_total_s).excludes_other_processes
    assert not EstimateProbe(profile=GENERIC).excludes_other_processes
