"""ST X-NUCLEO-LPM01A PowerShield: an ASCII command protocol and a current stream over USB VCP.

Reference: reference/power-and-thermal-sensors.md §5, "ST LPM01A PowerShield",
after mlcommons/tiny (benchmark/runner/power_manager.py, which embeds the
firmware's help text): commands end in CRLF and are acknowledged as
``PowerShield > ack <command>`` (or ``... error ...`` followed by an ``Error
detail:`` line). ``htc`` takes host control, ``hrc`` releases it; ``stop`` is
answered by ``Acquisition completed``.

The probe runs ``volt <mV>m``, ``freq <f>``, ``acqtime inf``, ``output
current``, ``format ascii_dec``, ``trigsrc sw``, ``start``. Data lines are
``6409-07`` (= 6409e-7 A), possibly several per line; ``TimeStamp``/``event``
lines are firmware status, anything else is counted as garbage. Power is the
measured current times the set supply voltage (1800-3300 mV), which the board
itself regulates. ``ascii_dec`` with unlimited acquisition time is limited to
5 kHz by the firmware, so ``freq_hz`` is at most 5000.

EEMBC EnergyRunner / MLPerf Tiny use ``output energy`` with a D7 trigger
instead; that needs a GPIO from the DUT. Current mode gives a power trace on
the host clock like every other sampler, so the same window clipping applies.
Samples are stamped on the nominal ``freq_hz`` grid (``stream_times_ns``).
The default 3686400 baud is the one the firmware help assumes; mlcommons'
newer runner uses 921600.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import EdgerunError, InputError, ProbeUnavailable
from edgerun.power.serial_base import LineSplitter, SerialMeter, stream_times_ns

if TYPE_CHECKING:
    import serial

__all__ = ["FREQS_HZ", "Lpm01aProbe", "decode_data_line"]

PROMPT = "PowerShield >"
#: freq argument for each allowed rate (ascii_dec with acqtime inf: up to 5 kHz).
FREQS_HZ = {1: "1", 2: "2", 5: "5", 10: "10", 20: "20", 50: "50", 100: "100", 200: "200", 500: "500"}
FREQS_HZ |= {1000: "1k", 2000: "2k", 5000: "5k"}
_VALUE = re.compile(r"^(\d{4})([+-])(\d{2})$")
_STATUS_PREFIXES = ("TimeStamp", "event")
COMMAND_TIMEOUT_S = 1.5


def decode_data_line(line: str) -> list[float] | None:
    """``"6409-07"`` -> [6.409e-4] (amperes); None when any token is not a value."""
    tokens = line.split()
    values = []
    for token in tokens:
        m = _VALUE.match(token)
        if m is None:
            return None
        values.append(float(f"{m.group(1)}e{m.group(2)}{m.group(3)}"))
    return values or None


def _reply(line: str, command: str) -> str | None:
    """'ack' or 'error' when ``line`` answers ``command``, else None."""
    text = line.replace(PROMPT, "").strip()
    if text.startswith("ack") and command.split()[0] in text:
        return "ack"
    if text.lower().startswith("error"):
        return "error"
    return None


class Lpm01aProbe(SerialMeter):
    """Power from an LPM01A on ``port``: current at ``freq_hz`` x the supply it sets, ``voltage_mv``.

    ``check()`` sends ``htc`` and needs ``ack htc`` back, then releases control (``hrc``).
    """

    name = "lpm01a"
    default_baud = 3686400

    def __init__(
        self, port: str, baud: int | None = None, scope: str = "board", *, voltage_mv: int = 3300, freq_hz: int = 1000
    ) -> None:
        super().__init__(port, baud, scope)
        if not 1800 <= voltage_mv <= 3300:
            raise InputError(f"voltage_mv {voltage_mv}: the LPM01A supplies 1800-3300 mV")
        if freq_hz not in FREQS_HZ:
            raise InputError(f"freq_hz {freq_hz}: expected one of {sorted(FREQS_HZ)} (ascii_dec, unlimited time)")
        self.voltage_mv, self.freq_hz = int(voltage_mv), int(freq_hz)
        self._reset()

    def _reset(self) -> None:
        self._splitter = LineSplitter()
        self._amps: list[float] = []
        self._chunks: list[tuple[int, int]] = []
        self._garbage = 0
        self._messages: list[str] = []
        self._completed = False

    def _command(self, ser: serial.Serial, command: str) -> list[str]:
        """Send ``command``; return the lines that followed its ack. Raises ProbeUnavailable on error or silence."""
        ser.write(f"{command}\r\n".encode("ascii"))
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            lines = self._splitter.feed(self._read_available(ser))
            for i, line in enumerate(lines):
                answer = _reply(line, command)
                if answer == "ack":
                    return lines[i + 1 :]
                if answer == "error":
                    detail = " ".join(lines[i:]).replace(PROMPT, "").strip()
                    raise ProbeUnavailable(f"LPM01A on {self.port} refused {command!r}: {detail}")
        raise ProbeUnavailable(
            f"no 'ack {command}' from {self.port} within {COMMAND_TIMEOUT_S} s: is it an LPM01A at {self.baud} baud "
            "(the firmware help assumes 3686400)?"
        )

    def _handshake(self, ser: serial.Serial) -> str | None:
        self._reset()
        try:
            self._command(ser, "htc")
            self._command(ser, "hrc")
        except ProbeUnavailable as exc:
            return str(exc)
        return None

    def _begin(self, ser: serial.Serial) -> None:
        self._reset()
        self._command(ser, "htc")
        setup = (f"volt {self.voltage_mv}m", f"freq {FREQS_HZ[self.freq_hz]}", "acqtime inf")
        for command in (*setup, "output current", "format ascii_dec", "trigsrc sw"):
            self._command(ser, command)
        rest = self._command(ser, "start")
        self._take_lines(rest, time.perf_counter_ns())

    def _take_lines(self, lines: list[str], arrival_ns: int) -> None:
        for line in lines:
            values = decode_data_line(line)
            if values is not None:
                self._amps.extend(values)
            elif "Acquisition completed" in line:
                self._completed = True
            elif line.startswith(_STATUS_PREFIXES) or PROMPT in line:
                if "error" in line.lower() and len(self._messages) < 5:
                    self._messages.append(line.replace(PROMPT, "").strip())
            elif line:
                self._garbage += 1
        self._chunks.append((arrival_ns, len(self._amps)))

    def _step(self, ser: serial.Serial) -> None:
        data = self._read_available(ser)
        if data:
            self._take_lines(self._splitter.feed(data), time.perf_counter_ns())

    def _end(self, ser: serial.Serial) -> None:
        ser.write(b"stop\r\n")
        deadline = time.monotonic() + 2.0  # lines before "Acquisition completed" were measured before stop()
        while not self._completed and time.monotonic() < deadline:
            self._step(ser)
        if not self._completed:
            raise EdgerunError("no 'Acquisition completed' after stop")
        self._command(ser, "hrc")

    def _collect(self) -> tuple[Any, Any, float | None, list[str]]:
        amps = np.asarray(self._amps, dtype=np.float64)
        t_ns = stream_times_ns(np.arange(amps.size), self._chunks, self.freq_hz)
        notes = [f"power = measured current x set supply {self.voltage_mv} mV"]
        garbage = self._garbage + self._splitter.overlong
        if garbage:
            notes.append(f"{garbage} garbage lines skipped")
        notes += [f"meter said: {m}" for m in self._messages]
        return t_ns, amps * (self.voltage_mv / 1000.0), float(self.freq_hz), notes
