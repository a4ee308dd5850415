"""Thermal state before and after a benchmark: zones, CPU clocks, throttling, cooldown.

Sources: the kernel's thermal and cpufreq sysfs documentation, Raspberry Pi's ``vcgencmd``
documentation and AOSP's ``ThermalManagerService`` (``dumpsys thermalservice``):

- ``/sys/class/thermal/thermal_zone*/{type,temp}``: ``temp`` in millidegrees C (kernel
  ``Documentation/driver-api/thermal/sysfs-api.rst``). Jetson zones are ordinary zones.
- ``/sys/devices/system/cpu/cpu*/cpufreq/{scaling_cur_freq,scaling_governor}``: kHz.
- Raspberry Pi ``vcgencmd get_throttled`` -> ``throttled=0x50000``: bits 0-3 are
  under-voltage, ARM frequency capped, throttled, soft temperature limit *now*; bits
  16-19 the same *has occurred* since boot (raspberrypi.com/documentation/computers/os.html).
- Android ``dumpsys thermalservice``: ``Thermal Status: N`` (0-6) and the lines under
  ``Current temperatures from HAL:``. The ``Cached temperatures:`` block above it holds
  whatever the HAL last pushed, possibly long ago, so it is ignored.

Missing sources are values with provenance, never a crash: ``sources`` lists what was
read, ``notes`` what was not and why. Timestamps are ``time.perf_counter_ns()``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import UsageError

__all__ = [
    "AndroidThermal",
    "CooldownResult",
    "ThermalFlags",
    "ThermalState",
    "ThrottleBits",
    "compare",
    "cooldown",
    "parse_thermalservice",
    "parse_throttled",
    "read_cpufreq",
    "read_thermal",
    "read_zones",
]

Runner = Callable[[Sequence[str]], "str | None"]  # edgerun.detection.CommandRunner
THROTTLE_BITS = ("under-voltage", "arm-frequency-capped", "throttled", "soft-temperature-limit")
ANDROID_STATUS = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")
# Constant, not a temperature: Jetson Nano/TX1/Xavier's PMIC-Die always reads 100 C (NVIDIA
# forum, quoted in balena-os/balena-jetson#142). Kept in zones_c, left out of hottest_c.
PLACEHOLDER_ZONES = frozenset({"PMIC-Die"})
_IMPLAUSIBLE_C = -100.0  # below this a reading is a sentinel (Jetson tools show -256 C), not a temperature
# Android Temperature types 6-8 are BCL voltage/current/percentage, not degrees C.
_ANDROID_NOT_TEMPERATURE = frozenset({6, 7, 8})
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+)")
_STATUS = re.compile(r"^Thermal Status:\s*(\d+)\s*$", re.MULTILINE)
# The indented lines after the header, up to "Current cooling devices from HAL:" or the end.
_HAL_BLOCK = re.compile(r"^Current temperatures from HAL:\r?\n((?:[ \t].*\n?)*)", re.MULTILINE)
_TEMPERATURE = re.compile(r"Temperature\{mValue=(-?(?:[\d.]+(?:E-?\d+)?|Infinity)|NaN), mType=(-?\d+), mName=([^,}]*)")


@dataclass(frozen=True)
class ThrottleBits:
    """Decoded ``vcgencmd get_throttled`` value (names from ``THROTTLE_BITS``)."""

    raw: int

    @property
    def now(self) -> tuple[str, ...]:  # bits 0-3
        return tuple(name for bit, name in enumerate(THROTTLE_BITS) if self.raw >> bit & 1)

    @property
    def occurred(self) -> tuple[str, ...]:  # bits 16-19, sticky until reboot
        return tuple(name for bit, name in enumerate(THROTTLE_BITS) if self.raw >> (bit + 16) & 1)

    def to_dict(self) -> dict[str, Any]:
        return {"raw": f"{self.raw:#x}", "now": list(self.now), "occurred": list(self.occurred)}


def parse_throttled(text: str) -> ThrottleBits | None:
    """``throttled=0x50005`` -> ThrottleBits(0x50005); None when no such line."""
    match = _THROTTLED.search(text)
    return ThrottleBits(int(match.group(1), 16)) if match else None


@dataclass(frozen=True)
class AndroidThermal:
    """What ``dumpsys thermalservice`` says: status 0-6 and current HAL temperatures (C)."""

    status: int | None
    temps_c: dict[str, float]
    notes: tuple[str, ...] = ()


def parse_thermalservice(text: str) -> AndroidThermal:
    """Parse ``dumpsys thermalservice`` (AOSP ThermalManagerService.dump format).

    Only the "Current temperatures from HAL:" block is used; "Cached temperatures:" is
    ignored. Non-temperature types (BCL) and NaN values are left out, with a note.
    """
    status_match = _STATUS.search(text)
    status = int(status_match.group(1)) if status_match else None
    notes = [] if status_match else ["no 'Thermal Status:' line"]
    block = _HAL_BLOCK.search(text)
    if block is None:
        notes.append("no 'Current temperatures from HAL:' block (HAL not ready?); cached values ignored")
        return AndroidThermal(status, {}, tuple(notes))
    temps_c: dict[str, float] = {}
    for value_text, kind, name in _TEMPERATURE.findall(block.group(1)):
        if int(kind) in _ANDROID_NOT_TEMPERATURE or not math.isfinite(float(value_text)):
            notes.append(f"skipped {name} (type {kind}, value {value_text}): not a temperature")
        else:
            temps_c[name.strip()] = float(value_text)
    return AndroidThermal(status, temps_c, tuple(notes))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:  # offline zones fail with EAGAIN (Orin Nano cv0-cv2), others EINVAL/ENODATA
        return None


def _numbered(parent: Path, prefix: str) -> list[tuple[int, Path]]:
    """``thermal_zone3`` -> (3, path), sorted by number (glob order is arbitrary)."""
    named = ((path.name[len(prefix) :], path) for path in parent.glob(f"{prefix}*"))
    return sorted((int(number), path) for number, path in named if number.isdigit())


def read_zones(root: Path) -> tuple[dict[str, float], list[str]]:
    """Thermal zones under ``root``: ({zone type: degrees C}, notes on what was skipped)."""
    zones_c: dict[str, float] = {}
    notes: list[str] = []
    for _, zone in _numbered(root / "sys/class/thermal", "thermal_zone"):
        kind = _read_text(zone / "type") or zone.name
        raw = _read_text(zone / "temp")
        if raw is None or not raw.lstrip("-").isdigit():
            notes.append(f"{zone.name} ({kind}): temp unreadable")
            continue
        value_c = int(raw) / 1000.0
        if value_c < _IMPLAUSIBLE_C:
            notes.append(f"{zone.name} ({kind}): {value_c:g} C is a no-reading sentinel, skipped")
            continue
        key = kind if kind not in zones_c else f"{kind}@{zone.name}"  # x86 repeats "acpitz"
        zones_c[key] = value_c
    return zones_c, notes


def read_cpufreq(root: Path) -> tuple[dict[int, int], dict[int, str], list[str]]:
    """Per-CPU ``scaling_cur_freq`` (kHz) and ``scaling_governor`` under ``root``."""
    freq_khz: dict[int, int] = {}
    governors: dict[int, str] = {}
    notes: list[str] = []
    for cpu, path in _numbered(root / "sys/devices/system/cpu", "cpu"):
        cpufreq = path / "cpufreq"
        if not cpufreq.is_dir():
            continue  # offline CPU, or no cpufreq driver (VMs, containers)
        raw = _read_text(cpufreq / "scaling_cur_freq")
        if raw is not None and raw.isdigit():
            freq_khz[cpu] = int(raw)
        else:
            notes.append(f"cpu{cpu}: scaling_cur_freq unreadable")
        governor = _read_text(cpufreq / "scaling_governor")
        if governor:
            governors[cpu] = governor
    return freq_khz, governors, notes


@dataclass(frozen=True)
class ThermalState:
    """One thermal reading of a device (degrees C, kHz; ``t_ns`` is perf_counter_ns)."""

    t_ns: int
    zones_c: dict[str, float]
    cpu_freq_khz: dict[int, int]
    governors: dict[int, str]
    throttled: ThrottleBits | None = None
    android_status: int | None = None
    android_temps_c: dict[str, float] | None = None
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def temps_c(self) -> dict[str, float]:
        """Every temperature: zones by type, Android HAL sensors as ``android:<name>``."""
        android = {f"android:{name}": value for name, value in (self.android_temps_c or {}).items()}
        return {**self.zones_c, **android}

    @property
    def hottest_c(self) -> float | None:
        """The highest temperature, placeholder zones (``PLACEHOLDER_ZONES``) left out."""
        values = [v for k, v in self.temps_c().items() if k.split("@")[0] not in PLACEHOLDER_ZONES]
        return max(values, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: CPU numbers become string keys, ``throttled`` its decoded form."""
        data = {**asdict(self), "hottest_c": self.hottest_c, "sources": list(self.sources), "notes": list(self.notes)}
        data["cpu_freq_khz"] = {str(cpu): khz for cpu, khz in self.cpu_freq_khz.items()}
        data["governors"] = {str(cpu): name for cpu, name in self.governors.items()}
        data["throttled"] = self.throttled.to_dict() if self.throttled else None
        return data


def _read_sysfs(root: Path, sources: list[str], notes: list[str]) -> tuple[dict, dict, dict]:
    (zones_c, zone_notes), (freq_khz, governors, freq_notes) = read_zones(root), read_cpufreq(root)
    notes += zone_notes + freq_notes
    for found, what, where in (
        (zones_c, "thermal zones", "class/thermal"),
        (freq_khz, "cpufreq", "devices/system/cpu"),
    ):
        if found:
            sources.append(f"sysfs {what} ({len(found)}) under {root / 'sys' / where}")
        else:  # no zones or cpufreq: a VM, a container, or a driver that is not loaded
            notes.append(f"no readable {what} under {root / 'sys' / where}")
    return zones_c, freq_khz, governors


def _run_parse(run: Runner, argv: list[str], parse: Callable[[str], Any], why: str, found: list[str], notes: list[str]):
    """Run one command and parse its output; None, with a note saying why, when that fails."""
    command, output = " ".join(argv), run(argv)
    parsed = None if output is None else parse(output)
    if output is None:
        notes.append(f"{command} gave nothing ({why})")
    elif parsed is None:
        notes.append(f"{command}: unexpected output {output.strip()[:80]!r}")
    else:
        found.append(command)
    return parsed


def _parse_android(text: str) -> AndroidThermal | None:
    android = parse_thermalservice(text)
    return android if android.status is not None or android.temps_c else None


def read_thermal(root: Path | None = Path("/"), run: Runner | None = None) -> ThermalState:
    """Read every thermal source this device offers; never raises for a missing one.

    ``root`` is where sysfs lives (a fixture tree in tests; None to skip sysfs, e.g. when
    ``run`` reaches a phone over ADB and this machine's sysfs is not the device's).
    ``run`` answers ``vcgencmd`` and ``dumpsys`` (``edgerun.detection.CommandRunner``); by
    default it runs them locally, but only when ``root`` is "/".
    """
    if run is None:
        from edgerun._commands import run_local

        run = run_local if root is not None and root.resolve() == Path("/") else (lambda argv: None)
    t_ns = time.perf_counter_ns()
    sources: list[str] = []
    notes: list[str] = []
    zones_c, freq_khz, governors = _read_sysfs(root, sources, notes) if root is not None else ({}, {}, {})
    pi_why = "not a Raspberry Pi, or not in the video group for /dev/vcio"
    throttled = _run_parse(run, ["vcgencmd", "get_throttled"], parse_throttled, pi_why, sources, notes)
    android = _run_parse(run, ["dumpsys", "thermalservice"], _parse_android, "not Android", sources, notes)
    status, temps_c = (android.status, android.temps_c) if android else (None, None)
    notes += [f"dumpsys thermalservice: {note}" for note in android.notes] if android else []
    return ThermalState(t_ns, zones_c, freq_khz, governors, throttled, status, temps_c, tuple(sources), tuple(notes))


@dataclass(frozen=True)
class ThermalFlags:
    """Why a result taken between two ThermalStates may not be representative (reference §6).

    ``throttled``: a Pi throttle bit set *now* before or after, new *occurred* bits during
    the run, or Android thermal status >= 1 (the platform throttles from "light" up).
    ``frequency_changed``: any CPU's current frequency or governor differs; on dynamic
    governors (ondemand, schedutil) idle clocks vary, so read ``reasons`` before discarding.
    ``max_temp_rise_c``: the largest after-minus-before over sensors present in both.
    """

    throttled: bool
    frequency_changed: bool
    android_status_rose: bool
    max_temp_rise_c: float | None
    start_hottest_c: float | None
    end_hottest_c: float | None
    reasons: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return self.throttled or self.frequency_changed or self.android_status_rose

    def to_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, **asdict(self), "reasons": list(self.reasons)}


def _throttle_reasons(before: ThermalState, after: ThermalState) -> list[str]:
    reasons = []
    for label, state in (("before", before), ("after", after)):
        bits = state.throttled
        if bits is not None and bits.now:
            reasons.append(f"{label}: get_throttled {bits.raw:#x}: {', '.join(bits.now)} now")
        status = state.android_status
        if status is not None and status >= 1:
            name = ANDROID_STATUS[status] if status < len(ANDROID_STATUS) else "unknown"
            reasons.append(f"{label}: Android thermal status {status} ({name}): the platform is throttling")
    old, new = before.throttled, after.throttled
    if old is not None and new is not None and old.occurred != new.occurred:
        added = ", ".join(name for name in new.occurred if name not in old.occurred) or "occurred bits changed"
        reasons.append(f"during the run: {added} (get_throttled {old.raw:#x} -> {new.raw:#x})")
    return reasons


def _frequency_reasons(before: ThermalState, after: ThermalState) -> list[str]:
    changes = []
    for cpu in sorted(set(before.cpu_freq_khz) | set(after.cpu_freq_khz)):
        old, new = before.cpu_freq_khz.get(cpu), after.cpu_freq_khz.get(cpu)
        if before.cpu_freq_khz and after.cpu_freq_khz and old != new:
            changes.append(f"cpu{cpu} {old or 'offline'} -> {new or 'offline'} kHz")
    for cpu in sorted(set(before.governors) & set(after.governors)):
        if before.governors[cpu] != after.governors[cpu]:
            changes.append(f"cpu{cpu} governor {before.governors[cpu]} -> {after.governors[cpu]}")
    if not changes:
        return []
    shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
    dynamic = sorted({g for g in after.governors.values() if g in ("ondemand", "schedutil", "conservative")})
    hint = f" (governor {'/'.join(dynamic)} scales clocks with load)" if dynamic else ""
    return [f"CPU frequency changed: {shown}{hint}"]


def compare(before: ThermalState, after: ThermalState) -> ThermalFlags:
    """Flags for a benchmark run bracketed by ``before`` and ``after`` (degrees C, kHz)."""
    throttle = _throttle_reasons(before, after)
    frequency = _frequency_reasons(before, after)
    rose = (before.android_status or 0) < (after.android_status or 0) and before.android_status is not None
    status = [f"Android thermal status rose {before.android_status} -> {after.android_status}"] if rose else []
    start, end = before.temps_c(), after.temps_c()
    rises = [end[name] - start[name] for name in start.keys() & end.keys()]
    rise_c = round(max(rises), 3) if rises else None
    reasons = tuple(throttle + frequency + status)
    return ThermalFlags(bool(throttle), bool(frequency), rose, rise_c, before.hottest_c, after.hottest_c, reasons)


@dataclass(frozen=True)
class CooldownResult:
    """What a cooldown did: ``reached`` False means it gave up (``reason`` says why).

    ``waited_s`` sums the sleeps; the reads add a little."""

    reached: bool
    waited_s: float
    start_c: float | None
    end_c: float | None
    until_c: float | None
    pause_s: float | None
    readings: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wait_below(
    until_c: float, current: ThermalState, budget_s: float, read: Callable[[], ThermalState], sleep, poll_s: float
) -> tuple[bool, float, ThermalState, int, str]:
    """Poll until the hottest sensor is under ``until_c``: (reached, waited_s, last, reads, reason)."""
    waited_s, reads = 0.0, 0
    while True:
        hottest = current.hottest_c
        if hottest is None:
            return False, waited_s, current, reads, f"no temperature readable, cannot wait for < {until_c:g} C"
        if hottest < until_c:
            return True, waited_s, current, reads, f"hottest sensor {hottest:g} C is under {until_c:g} C"
        if budget_s - waited_s < 1e-9:  # float sums of steps may fall short by an ulp
            return False, waited_s, current, reads, f"gave up: hottest sensor still {hottest:g} C >= {until_c:g} C"
        step_s = min(poll_s, budget_s - waited_s)
        sleep(step_s)
        waited_s += step_s
        current, reads = read(), reads + 1


def cooldown(
    until_c: float | None = None,
    pause_s: float | None = None,
    max_wait_s: float = 300.0,
    *,
    read: Callable[[], ThermalState] = read_thermal,
    sleep: Callable[[float], object] = time.sleep,
    poll_s: float = 2.0,
) -> CooldownResult:
    """Wait between artifacts: a fixed ``pause_s``, then until the hottest sensor is under ``until_c``.

    Either may be None; both None does nothing. The whole wait is capped at
    ``max_wait_s`` seconds; past it the result says it gave up. Temperatures in degrees C.
    """
    if max_wait_s < 0 or poll_s <= 0 or (pause_s is not None and pause_s < 0):
        raise UsageError(f"need max_wait_s >= 0, poll_s > 0, pause_s >= 0; got {max_wait_s}, {poll_s}, {pause_s}")
    if until_c is None and not pause_s:
        return CooldownResult(True, 0.0, None, None, until_c, pause_s, 0, "no cooldown asked")
    start = read()
    waited_s, reached, reason, end, reads = 0.0, True, "", start, 1
    if pause_s:
        waited_s = min(pause_s, max_wait_s)
        sleep(waited_s)
        end, reads = read(), reads + 1
        reached = pause_s <= max_wait_s
        reason = f"paused {waited_s:g} s" + ("" if reached else f" (pause_s {pause_s:g} capped by max_wait_s)")
    if until_c is not None and reached:
        reached, more_s, end, more_reads, why = _wait_below(until_c, end, max_wait_s - waited_s, read, sleep, poll_s)
        waited_s, reads = waited_s + more_s, reads + more_reads
        reason = f"{reason}; {why}" if reason else why
    return CooldownResult(reached, waited_s, start.hottest_c, end.hottest_c, until_c, pause_s, reads, reason)
