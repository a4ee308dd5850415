"""The labelled estimate: P = idle + (busy - idle) * CPU utilisation, end to end through measure_energy."""

from __future__ import annotations

import json
import os
import threading
import time

import psutil
import pytest

from edgerun.power import measure_energy, select_probe
from edgerun.power.estimate import EstimateProbe, cpu_busy_total_s, process_busy_total_s
from edgerun.profiles import load_profile

GENERIC = load_profile("generic-x86_64-linux")  # idle 10 W, busy 65 W


class FakeCpu:
    """Cumulative (busy, total) CPU seconds of a machine whose CPUs are all busy exactly while set busy."""

    def __init__(self, cpus: int = 4) -> None:
        self.cpus = cpus
        self.lock = threading.Lock()
        self.busy = False
        self.busy_s = self.total_s = 0.0
        self.last = time.perf_counter()

    def _accrue(self) -> None:
        now = time.perf_counter()
        elapsed_s, self.last = (now - self.last) * self.cpus, now
        self.total_s += elapsed_s
        self.busy_s += elapsed_s if self.busy else 0.0

    def set_busy(self, busy: bool) -> None:
        with self.lock:
            self._accrue()  # time so far belongs to the old state
            self.busy = busy

    def __call__(self) -> tuple[float, float]:
        with self.lock:
            self._accrue()
            return self.busy_s, self.total_s


def sleepy_run_for(cpu: FakeCpu):
    def run_for(seconds: float) -> int:
        cpu.set_busy(True)
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(0.002)
            count += 1
        cpu.set_busy(False)
        return count

    return run_for


def test_estimate_matches_the_power_model_for_a_known_utilisation():
    cpu = FakeCpu()
    probe = EstimateProbe(profile=GENERIC, rate_hz=50.0, cpu_times=cpu)
    report = measure_energy(probe, sleepy_run_for(cpu), windows=3, window_s=0.4, idle_s=0.3)
    assert report.valid, report.reason
    # A sampled step smears over about half a sample period on each side: 55 W x ~10 ms / 0.3 s.
    assert report.idle_power_w == pytest.approx(10.0, abs=1.5)
    assert report.mean_power_w == pytest.approx(65.0, rel=0.03)
    net = [55.0 * w.duration_s * 1e3 / w.inferences for w in report.windows]
    assert report.net_mj_per_inference == pytest.approx(sum(net) / len(net), rel=0.06)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert (d["source"], d["scope"], d["probe"]) == ("estimated", "estimate", "estimate")
    assert report.measured is False
    assert any(n.startswith("ESTIMATED") and "generic-x86_64-linux" in n for n in report.notes)


def busy_loop_run_for(seconds: float) -> int:
    """Real CPU load on one core: 'inferences' of pure-Python arithmetic."""
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        total = 0
        for i in range(2000):
            total += i * i
        count += 1
    return count


def test_estimate_with_real_cpu_load_machine_wide():
    # Machine-wide utilisation includes every other process on this (shared) machine, so only
    # bounds that other load cannot break are asserted: our busy thread alone keeps 1/N of the
    # N CPUs busy during the windows, and nothing exceeds the model's busy power.
    cpus = psutil.cpu_count() or 1
    probe = select_probe("estimate", profile=GENERIC)
    report = measure_energy(probe, busy_loop_run_for, windows=3, window_s=0.5, idle_s=0.3)
    assert report.to_dict()["source"] == "estimated" and report.scope == "estimate"
    assert report.valid, report.reason
    assert 10.0 <= report.idle_power_w <= 65.0
    assert 10.0 + 0.7 * 55.0 / cpus <= report.mean_power_w <= 65.0


def test_estimate_with_real_cpu_load_of_this_process():
    # Process utilisation ignores other processes, so the net power can be checked: one busy
    # thread is 1/N of the machine. Its CPU time is measured independently around each window.
    cpus = os.cpu_count() or 1
    cpu_s: list[float] = []

    def run_for(seconds: float) -> int:
        before_s = time.process_time()
        count = busy_loop_run_for(seconds)
        cpu_s.append(time.process_time() - before_s)
        return count

    probe = EstimateProbe(profile=GENERIC, rate_hz=50.0, cpu_times=process_busy_total_s)
    report = measure_energy(probe, run_for, windows=3, window_s=0.5, idle_s=0.3)
    assert report.valid, report.reason
    assert report.idle_power_w == pytest.approx(10.0, abs=2.0)  # the sampler's own CPU time, plus edge smear
    expected_net_j = sum(55.0 * s / cpus for s in cpu_s)
    assert sum(w.net_j for w in report.windows) == pytest.approx(expected_net_j, rel=0.12)
    assert any("this process's CPU time" in n for n in report.notes)


def test_cpu_busy_total_is_cumulative_and_bounded():
    busy0, total0 = cpu_busy_total_s()
    busy_loop_run_for(0.05)
    busy1, total1 = cpu_busy_total_s()
    assert total1 >= total0 and 0 <= busy1 - busy0 <= total1 - total0 + 1e-6
