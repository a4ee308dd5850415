"""The PowerProbe interface, shared by every sensor family (zeus-style).

A probe is discovered by a cheap ``check()``; ``start()`` begins sampling
(a background thread for polled sensors, a counter read for cumulative ones);
``stop()`` returns a ``Trace``. All timestamps are ``time.perf_counter_ns()``
(CLOCK_MONOTONIC on Linux), the same clock the inference loop uses, so a trace
can be clipped exactly to a measurement window.

Two kinds of trace:
- ``power``: instantaneous watts at each timestamp (INA3221, PMIC, meters,
  battery current x voltage). Energy = trapezoidal integral.
- ``energy``: a cumulative joule counter at each timestamp (RAPL, ODPM).
  Energy = difference of the counter, with wrap-around corrected at
  ``counter_max_j``.

Provenance travels with every trace: the probe's name, its scope (package /
module / board / battery / rail:<name>) and ``measured`` (False only for the
model-based estimate, which must never be mixed with measurements).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SCOPES = ("package", "module", "board", "battery", "rail", "estimate")


@dataclass(frozen=True)
class Availability:
    """Whether a probe can be used here, and why not (an actionable sentence)."""

    available: bool
    reason: str


@dataclass(frozen=True)
class Trace:
    probe: str
    scope: str  # one of SCOPES; "rail" traces name the rail in `rails`
    kind: str  # "power" (W) or "energy" (cumulative J)
    t_ns: np.ndarray  # int64, perf_counter_ns
    values: np.ndarray  # float64, W or J
    measured: bool = True
    sample_rate_hz: float | None = None  # nominal rate, for window-validity checks
    counter_max_j: float | None = None  # wrap point of an energy counter
    rails: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


class PowerProbe(Protocol):
    name: str
    scope: str
    measured: bool

    def check(self) -> Availability: ...

    def start(self) -> None: ...

    def stop(self) -> Trace: ...
