"""A labelled power *estimate* when no sensor is present: the profile's two-point model.

A probe's check() never silently substitutes an estimate, every result carries its probe
and scope, and an estimate is always labelled as one.

P = idle_w + (busy_w - idle_w) * u, with ``idle_w``/``busy_w`` from the device profile's
``[power_model]`` and u the machine's CPU utilisation (busy share of all logical CPUs'
time, from ``psutil.cpu_times()`` deltas; or this process's share with
``cpu_times=process_busy_total_s``) over each sample interval. The sample is
stamped at the middle of its interval, so a load step is placed where it happened to
within half a period. The trace is ``measured=False``, scope "estimate"; nothing here
is a measurement and it must never be compared with one.
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

__all__ = ["EstimateProbe", "cpu_busy_total_s", "process_busy_total_s"]


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

    An alternative to the machine-wide default for shared hosts, where other processes'
    load would otherwise be attributed to the model.
    """
    import os

    cpus = os.cpu_count() or 1
    return time.process_time(), time.perf_counter() * cpus


class EstimateProbe(PolledProbe):
    """Model-based power estimate from the device profile and CPU utilisation (never a measurement)."""

    name = "estimate"
    scope = "estimate"
    measured = False

    def __init__(
        self,
        profile: DeviceProfile | None = None,
        root: Path = Path("/"),
        run: CommandRunner | None = None,
        rate_hz: float = 10.0,
        cpu_times: Callable[[], tuple[float, float]] = cpu_busy_total_s,
    ) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self._run = run
        self._profile = profile
        self._cpu_times = cpu_times
        self._prev: tuple[int, float, float] = (0, 0.0, 0.0)  # t_ns, busy_s, total_s
        self._util = 0.0

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
        busy_s, total_s = self._cpu_times()
        self._prev = (time.perf_counter_ns(), busy_s, total_s)
        self._util = 0.0

    def _sample(self) -> tuple[int, float]:
        now_ns = time.perf_counter_ns()
        busy_s, total_s = self._cpu_times()
        prev_ns, prev_busy_s, prev_total_s = self._prev
        if total_s > prev_total_s:
            # Otherwise no clock tick passed (the first sample): keep the last utilisation.
            self._util = min(1.0, max(0.0, (busy_s - prev_busy_s) / (total_s - prev_total_s)))
        self._prev = (now_ns, busy_s, total_s)
        model = self.profile.power_model
        return (prev_ns + now_ns) // 2, model.idle_w + (model.busy_w - model.idle_w) * self._util

    def stop(self) -> Trace:
        """The trace, with the last interval's estimate held to the stop instant.

        Samples sit at interval middles, so without this the trace would end half a
        period before stop() and a window ending just before stop() would not be covered.
        """
        trace = super().stop()
        if trace.t_ns.size == 0:
            return trace
        end_ns = max(time.perf_counter_ns(), int(trace.t_ns[-1]))
        return dataclasses.replace(
            trace, t_ns=np.append(trace.t_ns, np.int64(end_ns)), values=np.append(trace.values, trace.values[-1])
        )

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
        )
