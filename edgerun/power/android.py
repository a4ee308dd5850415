"""Android power, read through a shell command runner (local, or ``adb shell``).

References: the kernel's power_supply ABI (``Documentation/ABI/testing/sysfs-class-power``),
AOSP ``BatteryService`` and ``PowerStatsService`` (``dumpsys battery`` / ``dumpsys powerstats``),
androidx benchmark's ``PowerRail.kt`` (the ODPM channel lines).

- Battery fuel gauge: ``/sys/class/power_supply/battery/{current_now,voltage_now}``,
  nominally µA and µV; some OEMs report mA and mV (detected by magnitude at start, or
  set explicitly). The kernel documents "negative = discharging" only since 2020
  (linux commit 05f94eb98907), and drivers used other conventions, so the sign is a
  setting: "negative-discharging" (kernel doc) or "positive-discharging". The trace holds
  the power drawn from the battery (positive while discharging). While a charger is
  connected the battery current is wrong for energy: the charging state from
  ``dumpsys battery`` ("AC/USB/Wireless powered: true") goes into the notes with a warning.
  SELinux often denies these files to the shell; check() says so.
- ODPM (On-Device Power Monitor, Pixel 6 and later): per-rail cumulative energy in µWs.
  ``dumpsys powerstats`` lists the channels (``ChannelId: 0, ChannelName: S10M_VDD_TPU,
  ChannelSubsystem: TPU``); the energies are read from the same text when it carries
  them (``ChannelId: 0, Timestamp (ms): .., Energy (uWs): ..`` as AOSP's
  ProtoStreamUtils prints them), else from the PowerStats HAL's dump (``[S10M_VDD_TPU]:TPU
  1234.56 mWs``, hardware/google/pixel powerstats). Kind "energy", scope "rail".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from edgerun.errors import UsageError
from edgerun.power._polled import CommandRunner, PolledProbe, ReadFailed, default_runner
from edgerun.power.base import Availability, Trace

__all__ = [
    "POWERSTATS_COMMAND",
    "POWERSTATS_HAL_COMMAND",
    "SIGN_CONVENTIONS",
    "AndroidBatteryProbe",
    "AndroidOdpmProbe",
    "charging_sources",
    "parse_powerstats",
]

SIGN_CONVENTIONS = ("negative-discharging", "positive-discharging")
SUPPLY_DIR = "/sys/class/power_supply"
POWERSTATS_COMMAND = ("dumpsys", "powerstats")
POWERSTATS_HAL_COMMAND = ("dumpsys", "android.hardware.power.stats.IPowerStats/default")
# Above these magnitudes a reading cannot be mA / mV on a phone (20 A; 100 V).
_MAX_MILLIAMPS = 20_000
_MAX_MILLIVOLTS = 100_000
_POWERED = re.compile(r"^\s*(AC|USB|Wireless|Dock) powered:\s*true\s*$", re.MULTILINE | re.IGNORECASE)
_CHANNEL = re.compile(r"ChannelId:\s*(\d+),\s*ChannelName:\s*([^,\s]+)")
_MEASUREMENT = re.compile(r"ChannelId:\s*(\d+),\s*Timestamp \(ms\):\s*\d+,.*?Energy \(uWs\):\s*(\d+)")
_HAL_METER = re.compile(r"^\s*\[?([\w.-]+?)\]?(?::\S+)?\s+(-?[\d.]+) mWs\b", re.MULTILINE)
_HAL_SECTION = re.compile(r"energy meter =+\n(.*?)\n=+ End of PowerStats HAL [\d.]+ energy meter", re.DOTALL)


def charging_sources(dumpsys_battery: str) -> list[str]:
    """The power sources ``dumpsys battery`` reports as connected ("AC", "USB", ...); [] on battery."""
    return [m.group(1) for m in _POWERED.finditer(dumpsys_battery)]


def _charging_note(run: CommandRunner, when: str) -> str:
    text = run(("dumpsys", "battery"))
    if text is None:
        return f"charging state at {when} unknown (`dumpsys battery` gave no output)"
    sources = charging_sources(text)
    if not sources:
        return f"on battery at {when} (no charger connected)"
    return (
        f"WARNING: {'/'.join(sources)} powered at {when}: the battery current excludes what the charger "
        "supplies, so battery energy is wrong while charging; unplug (wireless adb) or use ODPM"
    )


class AndroidBatteryProbe(PolledProbe):
    """Battery discharge power from the fuel gauge: V·I with per-device sign and units (scope "battery")."""

    name = "android-battery"
    scope = "battery"

    def __init__(
        self,
        root: Path = Path("/"),
        run: CommandRunner | None = None,
        rate_hz: float = 4.0,
        sign: str = "negative-discharging",
        current_unit: str = "auto",  # "auto" | "uA" | "mA"
        voltage_unit: str = "auto",  # "auto" | "uV" | "mV"
        supply: str = "battery",
    ) -> None:
        super().__init__(rate_hz)
        if sign not in SIGN_CONVENTIONS:
            raise UsageError(f"sign must be one of {SIGN_CONVENTIONS}, got {sign!r}")
        if current_unit not in ("auto", "uA", "mA") or voltage_unit not in ("auto", "uV", "mV"):
            raise UsageError(f"current_unit / voltage_unit: got {current_unit!r} / {voltage_unit!r}")
        self.root = Path(root)
        self.run = default_runner(self.root, run)
        self.sign, self.current_unit, self.voltage_unit = sign, current_unit, voltage_unit
        self.files = (f"{SUPPLY_DIR}/{supply}/current_now", f"{SUPPLY_DIR}/{supply}/voltage_now")
        self._scale: tuple[float, float] = (1e-6, 1e-6)  # A per unit, V per unit
        self._charging: list[str] = []

    def _raw(self) -> tuple[int, int]:
        # One command for both files: over adb each command costs a round trip.
        text = self.run(("cat", *self.files))
        if text is None:
            raise ReadFailed(f"`cat {' '.join(self.files)}` gave no output")
        lines = text.split()
        if len(lines) != 2:
            raise ReadFailed(f"expected current and voltage, got {text.strip()!r}")
        return int(lines[0]), int(lines[1])

    def check(self) -> Availability:
        try:
            self._raw()
        except (ReadFailed, ValueError) as exc:
            return Availability(
                False, f"cannot read the battery gauge through the shell ({exc}): missing, or SELinux denies it"
            )
        return Availability(True, f"battery gauge {self.files[0]} and voltage_now (sign: {self.sign})")

    def _open(self) -> None:
        super()._open()
        current, voltage = self._raw()
        self._scale = self._units(current, voltage)
        self._charging = [_charging_note(self.run, "start")]

    def _units(self, current: int, voltage: int) -> tuple[float, float]:
        """Amps and volts per raw unit, from the settings or the first reading's magnitude."""
        volt_unit = self.voltage_unit
        if volt_unit == "auto":
            volt_unit = "mV" if abs(voltage) < _MAX_MILLIVOLTS else "uV"
        amp_unit = self.current_unit
        if amp_unit == "auto":
            # OEMs that use mV use mA; a magnitude no phone draws in mA must be µA.
            amp_unit = "mA" if volt_unit == "mV" and abs(current) < _MAX_MILLIAMPS else "uA"
        self.current_unit, self.voltage_unit = amp_unit, volt_unit  # fixed for the run
        return (1e-3 if amp_unit == "mA" else 1e-6), (1e-3 if volt_unit == "mV" else 1e-6)

    def _read(self) -> float:
        current, voltage = self._raw()
        watts = current * self._scale[0] * voltage * self._scale[1]
        return -watts if self.sign == "negative-discharging" else watts

    def stop(self) -> Trace:
        if self._thread is not None:
            self._charging.append(_charging_note(self.run, "stop"))
        return super().stop()

    def _notes(self) -> tuple[str, ...]:
        return (
            f"battery power = V·I from {self.files[0]} ({self.current_unit}) and voltage_now "
            f"({self.voltage_unit}), sign {self.sign}; positive = discharging",
            "scope battery: the whole device as the fuel gauge sees it (smoothed, slow)",
            *self._charging,
        )


def parse_powerstats(text: str) -> tuple[dict[int, str], dict[str, float]]:
    """Channels {id: name} and cumulative energies {name: µWs} from powerstats dumpsys text.

    Energies come from ``ChannelId: N, Timestamp (ms): .., Energy (uWs): X`` lines (mapped
    to names through the channel list) or from the HAL dump's energy-meter section
    (``[NAME]:SUBSYSTEM  X mWs``, converted to µWs).
    """
    channels = {int(i): name for i, name in _CHANNEL.findall(text)}
    energies: dict[str, float] = {}
    for i, uws in _MEASUREMENT.findall(text):
        energies[channels.get(int(i), f"channel{i}")] = float(uws)
    for section in _HAL_SECTION.findall(text):
        for name, mws in _HAL_METER.findall(section):
            energies[name] = float(mws) * 1e3
    return channels, energies


class AndroidOdpmProbe(PolledProbe):
    """Sum of ODPM rail energy counters (kind "energy", scope "rail"); ``rails`` picks a subset."""

    name = "android-odpm"
    scope = "rail"
    kind = "energy"

    def __init__(
        self,
        root: Path = Path("/"),
        run: CommandRunner | None = None,
        rate_hz: float = 2.0,
        rails: Sequence[str] | None = None,
    ) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self.run = default_runner(self.root, run)
        self.wanted = tuple(rails) if rails else None
        self._command: tuple[str, ...] = POWERSTATS_COMMAND
        self._names: tuple[str, ...] = ()

    def _energies(self) -> tuple[dict[int, str], dict[str, float], tuple[str, ...]]:
        """Channels, energies (µWs) and the command that gave the energies."""
        text = self.run(POWERSTATS_COMMAND)
        if text is None:
            raise ReadFailed(f"`{' '.join(POWERSTATS_COMMAND)}` gave no output (not Android, or no shell)")
        channels, energies = parse_powerstats(text)
        if channels and not energies:
            hal = self.run(POWERSTATS_HAL_COMMAND) or ""
            return channels, parse_powerstats(hal)[1], POWERSTATS_HAL_COMMAND
        return channels, energies, POWERSTATS_COMMAND

    def check(self) -> Availability:
        try:
            channels, energies, command = self._energies()
        except ReadFailed as exc:
            return Availability(False, str(exc))
        if not channels and not energies:
            return Availability(False, "dumpsys powerstats lists no energy-meter channel (ODPM: Pixel 6 and later)")
        if not energies:
            return Availability(False, f"ODPM lists {len(channels)} channels but neither dumpsys gives energies")
        missing = [r for r in self.wanted or () if r not in energies]
        if missing:
            return Availability(False, f"ODPM has no rail {', '.join(missing)}; it has {', '.join(energies)}")
        return Availability(True, f"ODPM: {len(energies)} rails via `{' '.join(command)}`")

    def _open(self) -> None:
        super()._open()
        _, energies, self._command = self._energies()
        self._names = self.wanted or tuple(energies)

    def _read(self) -> float:
        text = self.run(self._command)
        if text is None:
            raise ReadFailed(f"`{' '.join(self._command)}` gave no output")
        energies = parse_powerstats(text)[1]
        missing = [r for r in self._names if r not in energies]
        if missing:
            raise ReadFailed(f"ODPM rails {', '.join(missing)} missing from `{' '.join(self._command)}`")
        return sum(energies[r] for r in self._names) / 1e6

    def _rails(self) -> tuple[str, ...]:
        return self._names

    def _notes(self) -> tuple[str, ...]:
        return (
            f"ODPM rail energy (µWs counters) summed over {len(self._names)} rails via `{' '.join(self._command)}`; "
            "stamped on the host at the middle of each dumpsys call",
            "scope rail: only the listed rails, not the whole device; unaffected by charging",
        )
