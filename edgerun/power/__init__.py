"""Power probes: one module per sensor family, discovered in order, selected by name or best first.

One interface; check() fails loudly and never silently substitutes an estimate; every result
carries its probe and scope. The shape follows Zeus (ml-energy/zeus, ``zeus/device/``): backends
tried in order by cheap checks, an empty stand-in when nothing is found, a loud error for a
named sensor that is not there.

    probe = select_probe()              # best measured probe here, else the labelled estimate
    probe = select_probe("rapl")        # ProbeUnavailable, with the reason, if it cannot work
    report = measure_energy(probe, run_for)

The sensor modules (rapl, jetson, rpi, android, estimate) are imported only when their
factory runs, so importing this package costs numpy and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgerun.errors import ProbeUnavailable
from edgerun.power._polled import CommandRunner
from edgerun.power.base import SCOPES, Availability, PowerProbe, Trace
from edgerun.power.energy import (
    EnergyReport,
    WindowEnergy,
    counter_delta,
    integrate_power,
    measure_energy,
    window_energy,
)

if TYPE_CHECKING:
    from edgerun.profiles import DeviceProfile

__all__ = [
    "ESTIMATE",
    "PROBES",
    "SCOPES",
    "Availability",
    "EnergyReport",
    "PowerProbe",
    "ProbeFactory",
    "ProbeUnavailable",
    "Trace",
    "WindowEnergy",
    "counter_delta",
    "discover",
    "integrate_power",
    "measure_energy",
    "probe_names",
    "select_probe",
    "window_energy",
]

ESTIMATE = "estimate"


@dataclass(frozen=True)
class ProbeFactory:
    """A probe's name and how to build it for a root tree, a command runner and a device profile."""

    name: str
    build: Callable[[Path, CommandRunner | None, DeviceProfile | None], PowerProbe]


def _rapl(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.rapl import RaplProbe

    return RaplProbe(root=root)


def _jetson(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.jetson import JetsonIna3221Probe

    return JetsonIna3221Probe(root=root)


def _tegrastats(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.jetson import TegrastatsProbe

    if Path(root).resolve() != Path("/"):
        # A fixture tree is not this machine: never start this machine's tegrastats for it.
        return TegrastatsProbe(command=(str(Path(root) / "usr/bin/tegrastats"),))
    return TegrastatsProbe()


def _rpi(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.rpi import RpiPmicProbe

    return RpiPmicProbe(root=root, run=run)


def _odpm(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.android import AndroidOdpmProbe

    return AndroidOdpmProbe(root=root, run=run)


def _battery(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.android import AndroidBatteryProbe

    return AndroidBatteryProbe(root=root, run=run)


def _estimate(root: Path, run: CommandRunner | None, profile: DeviceProfile | None) -> PowerProbe:
    from edgerun.power.estimate import EstimateProbe, process_busy_total_s

    # This process's own CPU time: the machine-wide share attributed other processes' load
    # to the model (issue 13), and the figure is per inference of this process.
    return EstimateProbe(profile=profile, root=root, run=run, cpu_times=process_busy_total_s)


#: Every probe, best first where several could apply to one device (sysfs before a
#: subprocess; ODPM before the battery gauge, which charging spoils). The estimate is last
#: and is only chosen when no measured probe is available. Serial meters need a port and
#: are not discovered here.
PROBES: list[ProbeFactory] = [
    ProbeFactory("rapl", _rapl),
    ProbeFactory("jetson-ina3221", _jetson),
    ProbeFactory("tegrastats", _tegrastats),
    ProbeFactory("rpi5-pmic", _rpi),
    ProbeFactory("android-odpm", _odpm),
    ProbeFactory("android-battery", _battery),
    ProbeFactory(ESTIMATE, _estimate),
]


# Serial meters: named "<meter>:<port>[@baud]" (e.g. "ppk2:/dev/ttyACM0", "ina219-csv:/dev/ttyUSB0@115200").
SERIAL_METERS = {
    "ina219-csv": ("edgerun.power.serial_ina219", "Ina219CsvProbe"),
    "rdtech-um": ("edgerun.power.serial_um", "RdtechUmProbe"),
    "ppk2": ("edgerun.power.serial_ppk2", "Ppk2Probe"),
    "lpm01a": ("edgerun.power.serial_lpm01a", "Lpm01aProbe"),
}


def _serial_probe(spec: str) -> PowerProbe | None:
    """Build a serial meter probe from "<meter>:<port>[@baud]", or None if spec names no meter."""
    meter, sep, rest = spec.partition(":")
    if not sep or meter not in SERIAL_METERS:
        return None
    port, _, baud = rest.partition("@")
    if not port:
        raise ProbeUnavailable(f"serial meter {meter!r} needs a port: {meter}:/dev/ttyUSB0[@baud]")
    import importlib

    module, cls = SERIAL_METERS[meter]
    probe: PowerProbe = getattr(importlib.import_module(module), cls)(port, int(baud) if baud else None)
    return probe


def probe_names() -> list[str]:
    """The names select_probe() accepts, in discovery order."""
    return [factory.name for factory in PROBES]


def _ordered(profile: DeviceProfile | None) -> list[ProbeFactory]:
    # The profile's own list of probes goes first, in its order: it knows its device best.
    preferred = list(profile.power.probes) if profile is not None else []
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(PROBES, key=lambda f: rank.get(f.name, len(rank)))


def _check(probe: PowerProbe) -> Availability:
    try:
        return probe.check()
    except Exception as exc:  # discovery must list every probe, whatever one of them does
        return Availability(False, f"check() raised {type(exc).__name__}: {exc}")


def discover(
    root: Path = Path("/"), run: CommandRunner | None = None, profile: DeviceProfile | None = None
) -> list[tuple[str, Availability]]:
    """Every probe with whether it can be used here and why (cheap checks only; nothing is started)."""
    return [(f.name, _check(f.build(Path(root), run, profile))) for f in _ordered(profile)]


def select_probe(
    name: str | None = None,
    *,
    root: Path = Path("/"),
    run: CommandRunner | None = None,
    profile: DeviceProfile | None = None,
) -> PowerProbe:
    """The probe named ``name``, or with None the first available measured probe, else the estimate.

    Raises ProbeUnavailable, with the probe's own reason, when a named probe is unknown or
    cannot be used here: a sensor the user asked for is never silently replaced.
    """
    factories = {f.name: f for f in PROBES}
    if name is not None:
        factory = factories.get(name)
        serial = _serial_probe(name) if factory is None else None
        if factory is None and serial is None:
            known = ", ".join([*factories, *(f"{m}:PORT" for m in SERIAL_METERS)])
            raise ProbeUnavailable(f"unknown power probe {name!r}; known: {known}")
        probe = serial if serial is not None else factories[name].build(Path(root), run, profile)
        availability = _check(probe)
        if not availability.available:
            raise ProbeUnavailable(f"power probe {name!r} is not available here: {availability.reason}")
        return probe
    for factory in _ordered(profile):
        if factory.name == ESTIMATE:
            continue
        probe = factory.build(Path(root), run, profile)
        if _check(probe).available:
            return probe
    return factories[ESTIMATE].build(Path(root), run, profile)
