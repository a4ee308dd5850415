"""Android specifics over ``adb shell``: charging state, and energy around a native benchmark run.

References: AOSP ``BatteryService`` (``dumpsys battery``) and the kernel's power_supply ABI
(``Documentation/ABI/testing/sysfs-class-power``). While a charger is
connected the battery gauge does not see what the charger supplies, so a battery
energy figure is wrong; the charging state is recorded with every native result and a
warning is added when it is on (unplug and use wireless adb, or use ODPM rails, which
charging does not affect).

Energy uses the measurement issue's probes with the device's command runner: ODPM
(Pixel 6 and later) first, then the battery gauge. The model-based estimate is never
used here: it models the host's CPU, not the phone's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgerun.targets.base import Target, command_runner

__all__ = ["charging_state", "measure_native_energy"]

IDLE_S = 1.0  # idle window before the binary starts: the baseline for net energy
_NO_ROOT = Path("/nonexistent-edgerun-device-root")  # the probes must read the device, not this machine


def charging_state(target: Target) -> dict[str, Any]:
    """``{"sources": [...], "charging": bool | None, "warning": str | None}`` from ``dumpsys battery``."""
    from edgerun.power.android import charging_sources

    text = command_runner(target)(["dumpsys", "battery"])
    if text is None:
        return {"sources": [], "charging": None, "warning": "charging state unknown: `dumpsys battery` gave nothing"}
    sources = charging_sources(text)
    warning = None
    if sources:
        warning = (
            f"the device was charging ({'/'.join(sources)} powered): battery-gauge energy is wrong while "
            "charging and heat from charging can throttle; unplug and use wireless adb, or ODPM rails"
        )
    return {"sources": sources, "charging": bool(sources), "warning": warning}


def _probe(target: Target, name: str) -> Any | None:
    from edgerun.errors import ProbeUnavailable
    from edgerun.power import select_probe

    run = command_runner(target)
    try:
        probe = select_probe(None if name == "auto" else name, root=_NO_ROOT, run=run)
    except ProbeUnavailable:
        return None
    return probe if probe.measured else None


def measure_native_energy(target: Target, work: Callable[[], Any], inferences: Callable[[Any], int]) -> tuple[Any, Any]:
    """Run ``work()`` with the device's power probe sampling; (work's value, energy dict or None).

    The window is the whole binary run (session creation, warm-up, timed runs), so the
    figure per inference is coarse; the idle second before it gives the baseline.
    """
    name = target.spec.options.power
    probe = None if name == "off" else _probe(target, name)
    if probe is None:
        return work(), None
    probe.start()
    try:
        time.sleep(IDLE_S)
        t0_ns = time.perf_counter_ns()
        value = work()
        t1_ns = time.perf_counter_ns()
    finally:
        trace = probe.stop()
    return value, _energy_dict(trace, t0_ns, t1_ns, max(1, inferences(value)))


def _energy_dict(trace: Any, t0_ns: int, t1_ns: int, n: int) -> dict[str, Any]:
    from edgerun.power.energy import window_energy

    idle = window_energy(trace, int(trace.t_ns[0]), t0_ns)
    run = window_energy(trace, t0_ns, t1_ns)
    idle_w = idle.mean_power_w if idle.valid else None
    net_j = run.joules - idle_w * run.duration_s if idle_w is not None else None
    reasons = [r for r in (run.reason, idle.reason and f"idle: {idle.reason}") if r]
    return {
        "source": "measured",
        "probe": trace.probe,
        "scope": trace.scope,
        "valid": run.valid,
        "reason": "; ".join(reasons) or "window = the whole binary run (init, warm-up, timed runs); coarse",
        "gross_mj_per_inference": run.joules * 1000 / n if run.valid else None,
        "net_mj_per_inference": net_j * 1000 / n if run.valid and net_j is not None else None,
        "ci95_mj": {"gross": None, "net": None},
        "mean_power_w": run.mean_power_w if run.valid else None,
        "idle_power_w": idle_w,
        "sample_count": int(len(trace.t_ns)),
        "sample_rate_hz": trace.sample_rate_hz,
        "inferences": n,
        "notes": list(trace.notes),
    }
