"""Intel/AMD RAPL package energy through powercap sysfs.

References: the kernel's powercap framework (``Documentation/power/powercap/powercap.rst``) and
its intel_rapl driver (``drivers/powercap/intel_rapl_common.c``); AMD support since kernel commit
43756a298928 ("powercap: Add AMD Fam17h RAPL support").

- ``/sys/class/powercap/intel-rapl:<pkg>/{name,energy_uj,max_energy_range_uj}``; AMD Zen
  uses the same ``intel-rapl`` tree. Only top-level ``package-N`` domains are read and
  summed (``intel-rapl:0:0`` subzones are parts of a package; ``psys`` overlaps them).
- ``energy_uj`` is a cumulative µJ counter that wraps at ``max_energy_range_uj``, possibly
  within minutes. The probe reads it at ``rate_hz`` (default 50 Hz, far more than once
  per wrap period) and unwraps each package at every read, so the trace holds one
  monotonic joule counter (``counter_max_j`` is None: nothing is left to unwrap).
- Since kernel commit 949dd0104c49 (CVE-2020-8694) ``energy_uj`` is root-only; check()
  says so with the fix.

Scope "package": CPU package(s) only, not the board or the PSU, and system-wide, not
per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgerun.power._polled import PolledProbe, ReadFailed, read_text
from edgerun.power.base import Availability

__all__ = ["PERMISSION_HINT", "POWERCAP", "RaplProbe"]

POWERCAP = Path("sys/class/powercap")
PERMISSION_HINT = (
    "energy_uj is readable by root only (kernel 5.10+, CVE-2020-8694): run as root or "
    "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
)


@dataclass
class _Domain:
    name: str  # package-N
    energy_path: Path
    max_uj: int
    last_uj: int = -1
    offset_uj: int = 0  # wraps seen so far times max_uj

    def read_unwrapped_uj(self) -> int:
        raw_uj = int(read_text(self.energy_path))
        if 0 <= raw_uj < self.last_uj:
            self.offset_uj += self.max_uj  # the counter wrapped (once: we read far faster than it wraps)
        self.last_uj = raw_uj
        return raw_uj + self.offset_uj


def _package_dirs(root: Path) -> list[Path]:
    base = root / POWERCAP
    # Top-level zones only: "intel-rapl:0" has one colon, its subzones "intel-rapl:0:0" two.
    return sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1)


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as an integer, or None when it can."""
    if not path.exists():
        return f"{path} does not exist"
    # os.access answers for the real uid; root passes it even for mode 000, hence the read below too.
    if not os.access(path, os.R_OK):
        return PERMISSION_HINT
    try:
        int(read_text(path))
    except PermissionError:
        return PERMISSION_HINT
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {exc}"
    return None


class RaplProbe(PolledProbe):
    """Sum of the RAPL package-N energy counters (kind "energy", scope "package")."""

    name = "rapl"
    scope = "package"
    kind = "energy"

    def __init__(self, root: Path = Path("/"), rate_hz: float = 50.0) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self._domains: list[_Domain] = []

    def _find(self) -> tuple[list[_Domain], str]:
        """The readable package domains, or [] and why not."""
        dirs = _package_dirs(self.root)
        named = [(d, _name(d)) for d in dirs]
        packages = [(d, n) for d, n in named if n.startswith("package-")]
        if not packages:
            where = self.root / POWERCAP
            return [], (
                f"no RAPL package domain under {where} (not an Intel/AMD x86 machine, "
                "or the intel_rapl / powercap driver is not loaded)"
            )
        domains = []
        for directory, name in packages:
            for file in ("energy_uj", "max_energy_range_uj"):
                problem = _unreadable(directory / file)
                if problem:
                    return [], problem
            max_uj = int(read_text(directory / "max_energy_range_uj"))
            domains.append(_Domain(name, directory / "energy_uj", max_uj))
        return domains, ""

    def check(self) -> Availability:
        domains, reason = self._find()
        if not domains:
            return Availability(False, reason)
        names = ", ".join(d.name for d in domains)
        return Availability(True, f"RAPL {names} energy counters under {self.root / POWERCAP}")

    def _open(self) -> None:
        super()._open()
        self._domains, _ = self._find()

    def _read(self) -> float:
        if not self._domains:
            raise ReadFailed("no RAPL domain open")
        return sum(d.read_unwrapped_uj() for d in self._domains) / 1e6

    def _notes(self) -> tuple[str, ...]:
        ranges = ", ".join(f"{d.name} wraps at {d.max_uj / 1e6:.0f} J" for d in self._domains)
        return (
            f"RAPL {ranges}; unwrapped at every read (at least one read per wrap period is needed)",
            "scope package: CPU package energy only (not DRAM, board or PSU), system-wide",
        )

    def _rails(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._domains)


def _name(directory: Path) -> str:
    try:
        return read_text(directory / "name")
    except OSError:
        return ""
