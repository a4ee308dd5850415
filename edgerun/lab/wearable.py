"""A wearable on a labgrid place: `serial tiny` through its ``NetworkSerialPort``, power-cycled when hung.

``dut_ready(url, baud, timeout_s)`` waits until the board answers ``name%`` (after a power cycle
it is booting: ser2net may not open its UART yet, and the firmware drops what arrives while it
boots); bounded by ``timeout_s``, DutTimeout naming the last reason when it never answers.

``tiny_job(devices, dataset, power, **options)`` is the lab's job for such a place: `serial tiny`
through the place's serial port (edgerun/targets/labgrid_resources.py), with one power cycle and retry
(edgerun/lab/power.py) when the board stopped answering; it returns the `serial tiny` result
with ``power_cycles`` and a warning when that happened.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from edgerun.errors import DutError, DutTimeout, LabError, PortUnavailable
from edgerun.lab.power import LabgridPower, is_unresponsive, note_power_cycles, run_with_power_cycle
from edgerun.serialhost.link import Backoff, close_quietly
from edgerun.targets.labgrid_resources import PlaceDevices

__all__ = ["dut_ready", "tiny_job"]

#: One name% exchange while waiting for a booting board: short, the wait retries.
_PROBE_S = 1.0


def dut_ready(url: str, baud: int, timeout_s: float) -> None:
    """Return once the DUT at ``url`` answers ``name%``; DutTimeout after ``timeout_s`` with the last reason."""
    from edgerun.serialhost.tiny import TinyDut, open_dut_port

    deadline, backoff, last = time.monotonic() + timeout_s, Backoff(max_s=1.0), "no attempt"
    while True:
        ser = None
        try:
            ser = open_dut_port(url, baud)
            TinyDut(ser, timeout_s=_PROBE_S).sync(min(_PROBE_S * 2, max(0.1, deadline - time.monotonic())))
            return
        except (PortUnavailable, DutError, OSError) as exc:
            last = str(exc)
        finally:
            close_quietly(ser)
        if time.monotonic() >= deadline:
            raise DutTimeout(f"the board at {url} did not answer name% within {timeout_s:g} s ({last})")
        time.sleep(min(backoff.next_delay_s(), max(0.0, deadline - time.monotonic())))


def tiny_job(
    devices: PlaceDevices,
    dataset: str | Path,
    power: LabgridPower | None = None,
    boot_timeout_s: float = 60.0,
    lost: threading.Event | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`serial tiny` on the place's serial port (``options``: TinyConfig fields but ``port``/``baud``);
    the result dict of ``build_tiny_result``, with ``power_cycles`` when the board had to be power-cycled.
    Once ``lost`` is set (the place's exporter went away) a failure is not taken for a hung board:
    no power cycle, no retry."""
    from edgerun.bench.environment import environment
    from edgerun.serialhost.tiny import TinyConfig, run_tiny
    from edgerun.serialhost.tinyresult import build_tiny_result

    if devices.serial is None:
        raise LabError("this place has no NetworkSerialPort available for `serial tiny`")
    url, baud = devices.serial
    config = TinyConfig(port=url, baud=options.pop("baud", baud), **options)
    run, cycles = run_with_power_cycle(
        lambda: run_tiny(config, dataset),
        power,
        ready=lambda: dut_ready(url, config.baud, boot_timeout_s),
        is_hung=lambda exc: not (lost is not None and lost.is_set()) and is_unresponsive(exc),
    )
    result = build_tiny_result(run, config, config.budget, environment())
    return note_power_cycles(result, cycles)
