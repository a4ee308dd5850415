"""An INA219 (or any current-sense MCU) streaming CSV lines over a serial port.

Reference: reference/power-and-thermal-sensors.md §5, "INA219 + Arduino": the
firmware prints ``t_us,bus_V,current_mA,power_mW`` (e.g.
``123456,5.012,412.3,2066.5``) at 115200 baud, 100 Hz-1 kHz, timestamped on
the MCU. The Adafruit sketch (adafruit/Adafruit_INA219 examples/getcurrent)
prints labelled lines for humans; this probe reads the CSV variant.

- A header line is optional; when one arrives its column names (any order,
  unknown extra columns ignored) replace the positional default.
- Power is ``power_mW`` when present, else ``bus_V x current_mA``. When both are
  present they must agree (the INA219 computes one from the other), which
  catches digits corrupted by noise.
- Garbage (non-numeric fields, partial or spliced lines, bytes >= 0x80) is
  skipped and counted, never raised.
- Time: the MCU's ``t_us`` gives exact spacing; it is mapped onto
  perf_counter_ns by the least ``arrival - t_us`` offset (a line cannot arrive
  before it was measured), per run of monotonic ``t_us`` (an MCU reset starts a
  new run; the uint32 ``micros()`` wrap at 71.6 min is unwrapped). A line whose
  offset is more than a second away from its run's median has a corrupted
  ``t_us`` and is dropped. Without a ``t_us`` column, lines are stamped on
  arrival.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgerun.power.serial_base import LineSplitter, SerialMeter

if TYPE_CHECKING:
    import serial

__all__ = ["CsvDecoder", "Ina219CsvProbe", "mcu_to_host_ns"]

DEFAULT_COLUMNS = ("t_us", "bus_V", "current_mA", "power_mW")
_CANONICAL = {name.lower(): name for name in DEFAULT_COLUMNS}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: An MCU timestamp whose arrival offset is this far from its run's median is corrupt.
TIMESTAMP_TOLERANCE_NS = 1_000_000_000
_U32_US = 2**32


class CsvDecoder:
    """One CSV line -> ``(t_us or None, watts)`` or None; counts what it rejects."""

    def __init__(self) -> None:
        self.columns: tuple[str, ...] = DEFAULT_COLUMNS
        self.garbage = 0
        self.inconsistent = 0
        self.headers = 0

    def decode(self, line: str) -> tuple[float | None, float] | None:
        if not line:
            return None
        fields = [f.strip() for f in line.split(",")]
        if self._take_header(fields):
            return None
        values = self._numbers(fields)
        if values is None:
            self.garbage += 1
            return None
        watts = self._watts(values)
        if watts is None:
            return None
        return values.get("t_us"), watts

    def _take_header(self, fields: list[str]) -> bool:
        if not all(_IDENT.match(f) for f in fields):
            return False
        names = tuple(_CANONICAL.get(f.lower(), f) for f in fields)
        if "power_mW" not in names and not {"bus_V", "current_mA"} <= set(names):
            return False  # identifiers, but not a header we understand: garbage
        self.columns, self.headers = names, self.headers + 1
        return True

    def _numbers(self, fields: list[str]) -> dict[str, float] | None:
        if len(fields) > len(self.columns):  # two lines spliced by a lost newline
            return None
        values = {}
        for name, text in zip(self.columns, fields):
            if not text:  # an empty field is a missing value (e.g. no power_mW)
                continue
            try:
                value = float(text)
            except ValueError:
                return None
            if not math.isfinite(value):
                return None
            values[name] = value
        return values

    def _watts(self, values: dict[str, float]) -> float | None:
        power_mw = values.get("power_mW")
        vi_mw = values["bus_V"] * values["current_mA"] if {"bus_V", "current_mA"} <= values.keys() else None
        if power_mw is None and vi_mw is None:
            self.garbage += 1
            return None
        # INA219 power = current x bus voltage up to register quantisation (a few mW)
        if (
            power_mw is not None
            and vi_mw is not None
            and abs(power_mw - vi_mw) > 0.1 * max(abs(power_mw), abs(vi_mw)) + 5.0
        ):
            self.inconsistent += 1
            return None
        return (power_mw if power_mw is not None else vi_mw) / 1000.0  # type: ignore[operator]


def _runs(t_ns: npt.NDArray[np.float64]) -> list[npt.NDArray[np.intp]]:
    """Index arrays of the runs of non-decreasing time (t_us going back means the MCU restarted)."""
    return [seg for seg in np.split(np.arange(t_ns.size), np.flatnonzero(np.diff(t_ns) < 0) + 1) if seg.size]


def mcu_to_host_ns(
    t_us: npt.ArrayLike, arrival_ns: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], int]:
    """Map MCU microsecond stamps onto perf_counter_ns; returns (t_ns, keep mask, MCU restarts seen).

    Two passes: the first drops corrupt stamps (far from their run's median
    offset), the second anchors each run on what is left, so a corrupt stamp
    neither drags an anchor nor counts as a restart.
    """
    t = np.asarray(t_us, dtype=np.float64)
    arrival = np.asarray(arrival_ns, dtype=np.float64)
    t = t + _U32_US * np.concatenate(([0], np.cumsum(np.diff(t) < -(_U32_US / 2))))  # uint32 micros() wrap
    t_ns = t * 1000.0
    keep = np.ones(t_ns.shape, dtype=bool)
    for seg in _runs(t_ns):
        offset = arrival[seg] - t_ns[seg]
        keep[seg] = np.abs(offset - np.median(offset)) <= TIMESTAMP_TOLERANCE_NS
    out = np.zeros_like(t_ns)
    kept = np.flatnonzero(keep)
    runs = _runs(t_ns[kept])
    for seg in runs:
        idx = kept[seg]
        out[idx] = t_ns[idx] + (arrival[idx] - t_ns[idx]).min()  # a line cannot arrive before it was measured
    return np.rint(out).astype(np.int64), keep, max(0, len(runs) - 1)


class Ina219CsvProbe(SerialMeter):
    """Power from a ``t_us,bus_V,current_mA,power_mW`` CSV stream on ``port`` (default 115200 baud).

    ``check()`` only verifies that the port opens: opening an Uno-class board's
    port pulses DTR and resets it, so a listen-for-a-line check would need ~2 s
    of bootloader silence to be reliable. A stream that never decodes (wrong
    baud, wrong format) is reported in the trace notes instead.
    """

    name = "ina219-csv"
    default_baud = 115200

    def __init__(self, port: str, baud: int | None = None, scope: str = "board") -> None:
        super().__init__(port, baud, scope)
        self._reset()

    def _reset(self) -> None:
        self._splitter = LineSplitter()
        self._decoder = CsvDecoder()
        self._t_us: list[float | None] = []
        self._watts: list[float] = []
        self._arrival_ns: list[int] = []
        self._bytes = 0

    def _begin(self, ser: serial.Serial) -> None:
        self._reset()
        self._splitter.reset(mid_line=True)

    def _step(self, ser: serial.Serial) -> None:
        data = self._read_available(ser)
        if not data:
            return
        arrival_ns = time.perf_counter_ns()
        self._bytes += len(data)
        for line in self._splitter.feed(data):
            sample = self._decoder.decode(line)
            if sample is not None:
                self._t_us.append(sample[0])
                self._watts.append(sample[1])
                self._arrival_ns.append(arrival_ns)

    def _collect(self) -> tuple[Any, Any, float | None, list[str]]:
        watts = np.asarray(self._watts, dtype=np.float64)
        arrival = np.asarray(self._arrival_ns, dtype=np.int64)
        has_t = np.array([t is not None for t in self._t_us], dtype=bool)
        t_ns, keep, rate_hz = arrival.copy(), np.ones(watts.shape, dtype=bool), None
        restarts = 0
        if has_t.any():
            t_mcu = np.array([t for t in self._t_us if t is not None], dtype=np.float64)
            t_ns[has_t], keep[has_t], restarts = mcu_to_host_ns(t_mcu, arrival[has_t])
        order = np.argsort(t_ns[keep], kind="stable")
        t_ns, watts = t_ns[keep][order], watts[keep][order]
        if t_ns.size >= 2:
            step_ns = np.diff(t_ns)
            rate_hz = float(1e9 / np.median(step_ns[step_ns > 0])) if (step_ns > 0).any() else None
        return t_ns, watts, rate_hz, self._notes(int((~keep).sum()), restarts)

    def _notes(self, bad_stamps: int, restarts: int) -> list[str]:
        d, s = self._decoder, self._splitter
        counts = {
            "garbage lines skipped": d.garbage + s.overlong,
            "lines where power_mW disagreed with bus_V x current_mA skipped": d.inconsistent,
            "lines with a corrupt t_us dropped": bad_stamps,
            "MCU clock restarts (t_us went back)": restarts,
        }
        notes = [f"{n} {what}" for what, n in counts.items() if n]
        if not self._watts:
            notes.append(
                f"no valid line in {self._bytes} bytes: wrong baud rate (now {self.baud}) or not the "
                "t_us,bus_V,current_mA,power_mW format?"
                if self._bytes
                else "no data received from the meter"
            )
        return notes
