"""The labelled estimate: P = idle + (busy - idle) * CPU utilisation, end to end through measure_energy.

The probe takes its CPU times from an injected source (``cpu_times``). A scripted source pins
the formula exactly; the real sources are checked over one sampling interval nested between
the test's own readings of the same counters, which bounds the utilisation the probe must
report whatever else the machine is doing.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterable

import pytest

from edgerun.power import measure_energy, select_probe
from edgerun.power.base import Trace
from edgerun.power.estimate import EstimateProbe, cpu_busy_total_s, process_busy_total_s
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
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ, cpu_times=scripted(readings))
    probe.start()
    trace = probe.stop()
    # stop() holds the last estimate to the stop instant: one more point with the same value.
    assert list(trace.values) == pytest.approx([*expected_w, expected_w[-1]], rel=1e-12)
    assert (trace.probe, trace.scope, trace.measured) == ("estimate", "estimate", False)


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
    assert report.valid, report.reason
    watts = IDLE_W + (BUSY_W - IDLE_W) * 0.4
    assert report.idle_power_w == pytest.approx(watts, rel=1e-9)
    assert report.mean_power_w == pytest.approx(watts, rel=1e-9)
    gross = [watts * w.duration_s * 1e3 / w.inferences for w in report.windows]
    assert report.gross_mj_per_inference == pytest.approx(sum(gross) / len(gross), rel=1e-9)
    assert all(w.net_j == pytest.approx(0.0, abs=1e-9) for w in report.windows)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert (d["source"], d["scope"], d["probe"]) == ("estimated", "estimate", "estimate")
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
    assert trace.values[-2] == trace.values[-1]  # the point held to the stop instant repeats the final sample
    return trace, IDLE_W + (BUSY_W - IDLE_W) * low_u, IDLE_W + (BUSY_W - IDLE_W) * high_u


def test_estimate_with_real_cpu_load_of_this_process():
    # This process's CPU time over all CPUs' wall time, read with the very source the probe uses.
    # Other load on the machine changes how much CPU the loop gets, and the bounds follow it.
    cpus = os.cpu_count() or 1
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ, cpu_times=process_busy_total_s)
    trace, low, high = one_interval_estimate(probe, process_busy_total_s, lambda: busy_loop(0.2))
    assert low - 1e-9 <= trace.values[-1] <= high + 1e-9, (low, trace.values[-1], high)
    assert low > IDLE_W  # the loop ran, so an estimator stuck at idle power fails here
    assert high < BUSY_W or cpus == 1  # one busy thread of several CPUs: stuck at busy power fails
    assert any("this process's CPU time" in n for n in trace.notes)
    trace, low, high = one_interval_estimate(probe, process_busy_total_s, lambda: time.sleep(0.2))
    assert low - 1e-9 <= trace.values[-1] <= high + 1e-9, (low, trace.values[-1], high)


def test_estimate_with_real_cpu_load_machine_wide():
    # Machine-wide utilisation includes every other process, which the bounds include too. On a
    # saturated machine both runs read about 100% busy; on a quiet one the sleeping run reads low.
    default = select_probe("estimate", profile=GENERIC)
    default.start()
    assert any("all logical CPUs of this machine" in n for n in default.stop().notes)  # the default source
    probe = EstimateProbe(profile=GENERIC, rate_hz=ONE_INTERVAL_HZ)
    # /proc/stat counts whole clock ticks per CPU, and its idle/iowait split can step back a tick.
    tick_s = (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")
    for workload in (lambda: busy_loop(0.2), lambda: time.sleep(0.2)):
        trace, low, high = one_interval_estimate(probe, cpu_busy_total_s, workload, slack_s=tick_s)
        assert low - 1e-9 <= trace.values[-1] <= high + 1e-9, (low, trace.values[-1], high)
        assert any("all logical CPUs of this machine" in n for n in trace.notes)


def test_cpu_busy_total_is_cumulative_and_bounded():
    busy0, total0 = cpu_busy_total_s()
    busy_loop(0.05)
    busy1, total1 = cpu_busy_total_s()
    assert total1 >= total0 and 0 <= busy1 - busy0 <= total1 - total0 + 1e-6
