"""Raspberry Pi 5 board power from the PMIC's ADC (``vcgencmd pmic_read_adc``).

References: Raspberry Pi's ``vcgencmd`` documentation (raspberrypi.com/documentation/computers/os.html)
and Zeus's reader of the same output (ml-energy/zeus, ``zeus/device/machine/rpi.py``).

The command prints one line per channel, e.g. ``VDD_CORE_A current(7)=1.11625000A`` and
``VDD_CORE_V volt(15)=0.74944980V``. Each ``<RAIL>_A`` is paired with its ``<RAIL>_V`` and
the board power is Σ V·I over the pairs (12 on a Pi 5; ``EXT5V``, the input, has a
voltage but no current channel and so is not counted). This leaves out the PMIC's
conversion losses and 5 V peripherals (USB devices, HATs, fan), so it is below the wall
power; the trace notes say so. Each read costs ~23 ms of firmware time: sample at
10 Hz or less (default 5 Hz). Access needs the ``video`` group (``/dev/vcio``).
Pi 4 and older have no current sensing: check() says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgerun.power._polled import CommandRunner, PolledProbe, ReadFailed, default_runner
from edgerun.power.base import Availability

__all__ = ["PMIC_COMMAND", "RpiPmicProbe", "parse_pmic_read_adc", "pmic_power_w"]

PMIC_COMMAND = ("vcgencmd", "pmic_read_adc")
_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=\s*(-?[\d.]+)\s*[AV]\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, tuple[float, float]]:
    """Paired rails from ``vcgencmd pmic_read_adc`` output: {rail: (volts, amps)}.

    Rails with only a voltage (EXT5V, BATT) or only a current are left out.
    """
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            rail, unit, value = match.groups()
            (amps if unit == "A" else volts)[rail] = float(value)
    return {rail: (volts[rail], amps[rail]) for rail in amps if rail in volts}


def pmic_power_w(rails: dict[str, tuple[float, float]]) -> float:
    """Σ V·I over paired rails, watts."""
    return sum(v * i for v, i in rails.values())


class RpiPmicProbe(PolledProbe):
    """Raspberry Pi 5 board power: Σ V·I over the PMIC's paired rails (scope "board")."""

    name = "rpi5-pmic"
    scope = "board"

    def __init__(self, root: Path = Path("/"), run: CommandRunner | None = None, rate_hz: float = 5.0) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self.run = default_runner(self.root, run)
        self._names: tuple[str, ...] = ()

    def _rails_now(self) -> dict[str, tuple[float, float]]:
        text = self.run(PMIC_COMMAND)
        if text is None:
            raise ReadFailed(f"`{' '.join(PMIC_COMMAND)}` gave no output")
        rails = parse_pmic_read_adc(text)
        if not rails:
            raise ReadFailed(f"`{' '.join(PMIC_COMMAND)}` printed no paired <RAIL>_A / <RAIL>_V lines")
        return rails

    def check(self) -> Availability:
        text = self.run(PMIC_COMMAND)
        if text is None:
            return Availability(
                False,
                f"`{' '.join(PMIC_COMMAND)}` gave no output (not a Raspberry Pi 5, vcgencmd missing, "
                "or no access to /dev/vcio: add the user to the video group)",
            )
        rails = parse_pmic_read_adc(text)
        if not rails:
            return Availability(
                False, "pmic_read_adc printed no paired current/voltage rails (Pi 4 and older have no PMIC ADC)"
            )
        return Availability(True, f"Pi 5 PMIC ADC, {len(rails)} paired rails (Σ V·I)")

    def _open(self) -> None:
        super()._open()
        self._names = tuple(self._rails_now())

    def _read(self) -> float:
        return pmic_power_w(self._rails_now())

    def _rails(self) -> tuple[str, ...]:
        return self._names

    def _notes(self) -> tuple[str, ...]:
        return (
            f"board power = Σ V·I over {len(self._names)} PMIC rails; excludes PMIC conversion losses "
            "and 5 V peripherals (USB, HATs, fan), so it reads below the input power",
            f"each pmic_read_adc costs ~23 ms of firmware time; sampled at {self.rate_hz:g} Hz",
        )
