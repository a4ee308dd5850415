"""A labelled power *estimate* when no sensor is present: the profile's two-point model.

A probe's check() never silently substitutes an estimate, every result carries its probe
and scope, and an estimate is always labelled as one.

P = idle_w + (busy_w - idle_w) * u, with ``idle_w``/``busy_w`` from the device profile's
``[power_model]`` and u a CPU utilisation over each sample interval: this process's CPU
time over all logical CPUs' time (``cpu_times=process_busy_total_s``, what ``bench``
uses: other processes' load is not the model's), or the machine's busy share from
``psutil.cpu_times()`` (``cpu_busy_total_s``, the class default).

The trace is a cumulative-energy trace (kind "energy", joules): each read at t_i adds
P_i * (t_i - t_{i-1}), P_i being the power of the utilisation measured over exactly that
interval. Power is so held constant over each true interval (rectangles), and
edgerun.power.energy's linear interpolation of a counter integrates it exactly, a window
edge inside an interval included. (Stamping each interval's power at its middle and
integrating trapezoids, as before, smeared a load step over neighbouring intervals.)
The trace is ``measured=False``; nothing here is a measurement and it must never be
compared with one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgerun.power._polled import CommandRunner, PolledProbe
from edgerun.power.base import Availability, Trace

if TYPE_CHECKING:
    from edgerun.profiles import DeviceProfile

__all__ = [
    "SCOPE_MACHINE",
    "SCOPE_PROCESS",
    "EstimateProbe",
    "cpu_busy_total_s",
    "cpu_load_reader",
    "interval_power_w",
    "process_busy_total_s",
]


def cpu_busy_total_s() -> tuple[float, float]:
    """Cumulative (busy, total) CPU seconds over all logical CPUs, from psutil."""
    import psutil  # lazy: only the estimate needs it

    times = psutil.cpu_times()
    # As psutil.cpu_percent does: Linux counts guest time inside user/nice already.
    total_s = float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle_s = times.idle + getattr(times, "iowait", 0.0)
    return total_s - idle_s, total_s


def process_busy_total_s() -> tuple[float, float]:
    """Cumulative (busy, total) CPU seconds of *this process* (all its threads) against all CPUs' time.

    What bench's estimate uses: on a shared host the machine-wide share would attribute
    other processes' load to the model (issue 13: 6.8 J per 0.5 s window where this
    process's own CPU time implied 2.4 J).
    """
    import os

    cpus = os.cpu_count() or 1
    return time.process_time(), time.perf_counter() * cpus


def cpu_load_reader() -> Callable[[], tuple[float, float, float]] | None:
    """() -> cumulative (machine busy, this process's busy, all CPUs' total) CPU seconds, for
    other processes' share of an idle window; None where psutil or /proc/stat cannot be read."""
    try:
        cpu_busy_total_s()
    except Exception:  # the idle-load check is then skipped (None per window), never fatal
        return None

    def read() -> tuple[float, float, float]:
        busy_s, total_s = cpu_busy_total_s()
        return busy_s, time.process_time(), total_s

    return read


#: Trace scopes, by CPU-time source: the category "estimate" plus what it is attributed by.
SCOPE_PROCESS = "estimate (process CPU time, modelled)"
SCOPE_MACHINE = "estimate (machine CPU time, other processes included, modelled)"


class EstimateProbe(PolledProbe):
    """Model-based power estimate from the device profile and CPU utilisation (never a measurement)."""

    name = "estimate"
    scope = "estimate"  # the category; the trace's scope also says what the CPU time is (SCOPE_*)
    measured = False
    kind = "energy"  # cumulative joules: constant power per interval, integrated exactly

    def __init__(
        self,
        profile: DeviceProfile | None = None,
        root: Path = Path("/"),
        run: CommandRunner | None = None,
        rate_hz: float = 10.0,
        cpu_times: Callable[[], tuple[float, float]] = cpu_busy_total_s,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self._run = run
        self._profile = profile
        self._cpu_times = cpu_times
        self._clock_ns = clock_ns  # injectable so a test can script uneven intervals exactly
        self._prev: tuple[int, float, float] = (0, 0.0, 0.0)  # t_ns, busy_s, total_s
        self._util = 0.0
        self._energy_j = 0.0

    @property
    def excludes_other_processes(self) -> bool:
        """True when the estimate counts only this process's CPU time (measure_energy reads this)."""
        return self._cpu_times is process_busy_total_s

    @property
    def profile(self) -> DeviceProfile:
        """The profile whose power model is used (detected for ``root`` when none was given)."""
        if self._profile is None:
            from edgerun.detection import detect

            self._profile = detect(self.root, self._run).profile
        return self._profile

    def check(self) -> Availability:
        model = self.profile.power_model
        return Availability(
            True,
            f"estimate, not a measurement: profile {self.profile.name} power model "
            f"idle {model.idle_w:g} W, busy {model.busy_w:g} W, scaled by CPU utilisation",
        )

    def _open(self) -> None:
        now_ns = self._clock_ns()
        busy_s, total_s = self._cpu_times()
        self._prev = (now_ns, busy_s, total_s)
        self._util = 0.0
        self._energy_j = 0.0

    def _sample(self) -> tuple[int, float]:
        """(read instant, cumulative J): the interval since the last read at its own utilisation's power."""
        now_ns = self._clock_ns()
        busy_s, total_s = self._cpu_times()
        prev_ns, prev_busy_s, prev_total_s = self._prev
        if total_s > prev_total_s:
            # Otherwise no clock tick passed (the first sample): keep the last utilisation.
            self._util = min(1.0, max(0.0, (busy_s - prev_busy_s) / (total_s - prev_total_s)))
        self._prev = (now_ns, busy_s, total_s)
        model = self.profile.power_model
        watts = model.idle_w + (model.busy_w - model.idle_w) * self._util
        self._energy_j += watts * max(0, now_ns - prev_ns) / 1e9
        return now_ns, self._energy_j

    def _trace(self) -> Trace:
        trace = super()._trace()
        return dataclasses.replace(trace, scope=SCOPE_PROCESS if self.excludes_other_processes else SCOPE_MACHINE)

    def _utilisation_source(self) -> str:
        if self._cpu_times is cpu_busy_total_s:
            return "busy share of all logical CPUs of this machine, other processes included (psutil.cpu_times)"
        if self._cpu_times is process_busy_total_s:
            return "this process's CPU time over all logical CPUs' time (other processes excluded)"
        return f"from {getattr(self._cpu_times, '__name__', type(self._cpu_times).__name__)}"

    def _notes(self) -> tuple[str, ...]:
        model = self.profile.power_model
        return (
            f"ESTIMATED, not measured: P = {model.idle_w:g} W + ({model.busy_w:g} - {model.idle_w:g}) W x CPU "
            f"utilisation, power model of profile {self.profile.name}",
            f"utilisation: {self._utilisation_source()}",
            "integrated as constant power over each sample interval (a cumulative-energy trace)",
        )


def interval_power_w(trace: Trace) -> np.ndarray:
    """The constant power of each interval of an estimate trace: diff(J) / diff(s), one per interval."""
    dt_s = np.diff(np.asarray(trace.t_ns, dtype=np.int64)).astype(np.float64) / 1e9
    d_j = np.diff(np.asarray(trace.values, dtype=np.float64))
    return np.divide(d_j, dt_s, out=np.zeros_like(d_j), where=dt_s > 0)
