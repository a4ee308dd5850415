"""NVIDIA Jetson module power: INA3221 through sysfs, and a tegrastats fallback.

References: the kernel's ``Documentation/hwmon/ina3221.rst`` and jetson_stats
(rbonghi/jetson_stats, ``jtop/core/power.py`` and ``jtop/core/tegra_parse.py``).

- JetPack 5/6 (hwmon): ``/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<N>/``
  ``in<i>_label``, ``in<i>_input`` (mV), ``curr<i>_input`` (mA). Rails are resolved by
  label because the hwmon index changes between boots; ``in7`` ("sum of shunt
  voltages") and labels naming an unconnected channel (NC) are skipped, as jtop does.
- JetPack 4 (iio): ``/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<N>/``
  ``in_power<i>_input`` (mW) with ``rail_name_<i>``.
- Total: ``VDD_IN`` (or ``POM_5V_IN``) is the module input and already contains the
  other rails; without it, the sum of the rails. Per-rail means go in the trace notes.
- tegrastats (``tegrastats --interval <ms>``): ``NAME cur/avg`` with or without a ``mW``
  suffix; a coarse subprocess, so only a fallback (see ``TegrastatsProbe``).

Scope "module": the Jetson module only, not the carrier board; there is no GPU-only rail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgerun.power._polled import PolledProbe, ReadFailed, read_text
from edgerun.power.base import Availability

__all__ = ["TOTAL_RAILS", "JetsonIna3221Probe", "TegrastatsProbe", "parse_tegrastats_line", "total_w"]

HWMON_GLOB = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"
IIO_GLOB = "sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input"
#: Rails that are the module's input power; when one is present it is the total.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
_INDEX = re.compile(r"(\d+)(?:_label|_input)$")
# jtop's pattern (jtop/core/tegra_parse.py) plus the optional mW suffix of JetPack 5+.
# The \b after the second number keeps "RAM 2123/7860MB" and "SWAP 0/3930MB" out.
_TEGRA_RAIL = re.compile(r"\b(\w+) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?\b")


def total_w(rails_w: dict[str, float]) -> float:
    """Module power from per-rail watts: the input rail when present, else the sum of all rails."""
    for name in TOTAL_RAILS:
        if name in rails_w:
            return rails_w[name]
    return sum(rails_w.values())


def _skipped(label: str) -> bool:
    tokens = re.split(r"[^A-Za-z0-9]+", label.upper())
    return "sum of shunt" in label.lower() or "NC" in tokens


@dataclass(frozen=True)
class _Rail:
    name: str
    paths: tuple[Path, ...]  # hwmon: (mV, mA); iio: (mW,)

    def read_w(self) -> float:
        if len(self.paths) == 2:
            return int(read_text(self.paths[0])) * int(read_text(self.paths[1])) / 1e6
        return int(read_text(self.paths[0])) / 1e3


def _hwmon_rails(root: Path) -> list[_Rail]:
    rails = []
    for label_path in sorted(root.glob(HWMON_GLOB)):
        label = read_text(label_path)
        match = _INDEX.search(label_path.name)
        if _skipped(label) or match is None:
            continue
        i = match.group(1)
        # A labelled rail whose inputs are missing stays in: check() then says it is unreadable,
        # rather than the total silently turning into the sum of the remaining rails.
        rails.append(_Rail(label, (label_path.with_name(f"in{i}_input"), label_path.with_name(f"curr{i}_input"))))
    return rails


def _iio_rails(root: Path) -> list[_Rail]:
    rails = []
    for power_path in sorted(root.glob(IIO_GLOB)):
        match = _INDEX.search(power_path.name)
        if match is None:
            continue
        name_path = power_path.with_name(f"rail_name_{match.group(1)}")
        label = read_text(name_path) if name_path.exists() else f"channel{match.group(1)}"
        if not _skipped(label):
            rails.append(_Rail(label, (power_path,)))
    return rails


def _unique(rails: list[_Rail]) -> list[_Rail]:
    # AGX modules carry two chips; a label that repeats is told apart by its chip folder.
    seen: dict[str, int] = {}
    out = []
    for rail in rails:
        seen[rail.name] = seen.get(rail.name, 0) + 1
        name = rail.name if seen[rail.name] == 1 else f"{rail.name}@{rail.paths[0].parts[-4]}"
        out.append(_Rail(name, rail.paths))
    return out


class _RailMeans:
    """Running per-rail sums for the notes (the trace itself holds the total)."""

    def __init__(self) -> None:
        self.sum_w: dict[str, float] = {}
        self.count = 0

    def add(self, rails_w: dict[str, float]) -> None:
        self.count += 1
        for name, watts in rails_w.items():
            self.sum_w[name] = self.sum_w.get(name, 0.0) + watts

    def note(self) -> str:
        means = ", ".join(f"{n} {s / self.count:.3f} W" for n, s in self.sum_w.items()) if self.count else "none"
        return f"per-rail mean power over {self.count} samples: {means}"


def _total_note(names: Sequence[str]) -> str:
    for name in TOTAL_RAILS:
        if name in names:
            return f"total = {name} (module input; the other rails are parts of it and are not added)"
    return "total = sum of the rails (no VDD_IN / POM_5V_IN rail)"


class JetsonIna3221Probe(PolledProbe):
    """Jetson module power from the INA3221 monitors (hwmon on JetPack 5/6, iio on JetPack 4)."""

    name = "jetson-ina3221"
    scope = "module"

    def __init__(self, root: Path = Path("/"), rate_hz: float = 100.0) -> None:
        super().__init__(rate_hz)
        self.root = Path(root)
        self._rails_open: list[_Rail] = []
        self._source = ""
        self._means = _RailMeans()

    def _find(self) -> tuple[list[_Rail], str]:
        try:
            hwmon = _hwmon_rails(self.root)
            if hwmon:
                return _unique(hwmon), "hwmon (JetPack 5/6)"
            return _unique(_iio_rails(self.root)), "iio (JetPack 4)"
        except OSError:
            return [], ""

    def check(self) -> Availability:
        rails, source = self._find()
        if not rails:
            return Availability(
                False,
                f"no INA3221 rail under {self.root / 'sys/bus/i2c/drivers'}/ina3221*/ "
                "(not a Jetson, or the ina3221 driver is not bound)",
            )
        try:
            for rail in rails:
                rail.read_w()
        except (OSError, ValueError) as exc:
            return Availability(False, f"INA3221 rail {rail.name} is unreadable: {exc}")
        return Availability(True, f"INA3221 via {source}: rails {', '.join(r.name for r in rails)}")

    def _open(self) -> None:
        super()._open()
        self._rails_open, self._source = self._find()
        self._means = _RailMeans()

    def _read(self) -> float:
        if not self._rails_open:
            raise ReadFailed("no INA3221 rail open")
        rails_w = {rail.name: rail.read_w() for rail in self._rails_open}
        self._means.add(rails_w)
        return total_w(rails_w)

    def _rails(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._rails_open)

    def _notes(self) -> tuple[str, ...]:
        return (
            f"INA3221 via {self._source}; {_total_note(self._rails())}",
            self._means.note(),
            "scope module: the Jetson module only, not the carrier board",
        )


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Instantaneous rail power in watts from one tegrastats line (``NAME cur/avg``, mW with or without suffix)."""
    return {m.group(1): float(m.group(2)) / 1e3 for m in _TEGRA_RAIL.finditer(line)}


class TegrastatsProbe(PolledProbe):
    """Module power parsed from a running ``tegrastats --interval <ms>`` (fallback to the sysfs probe).

    ``command`` is the argv prefix that starts tegrastats (over SSH: ``("ssh", host,
    "tegrastats")``). Each line is stamped when it arrives, so timing is only as good as
    tegrastats' interval; prefer JetsonIna3221Probe.
    """

    name = "tegrastats"
    scope = "module"
    final_read = False  # the process is killed in stop(); there is no "one more line"

    def __init__(self, command: Sequence[str] = ("tegrastats",), interval_ms: int = 100) -> None:
        super().__init__(rate_hz=1000.0 / interval_ms)
        self.command = tuple(command)
        self.interval_ms = int(interval_ms)
        self._process: subprocess.Popen[str] | None = None
        self._names: tuple[str, ...] = ()
        self._means = _RailMeans()

    def check(self) -> Availability:
        if shutil.which(self.command[0]) is None:
            return Availability(False, f"{self.command[0]} not found (JetPack ships tegrastats in /usr/bin)")
        return Availability(True, f"{' '.join(self.command)} --interval {self.interval_ms}")

    def _open(self) -> None:
        super()._open()
        argv = [*self.command, "--interval", str(self.interval_ms)]
        # tegrastats prints non-ASCII (°, …) on some releases: decode as UTF-8 whatever the locale.
        self._process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, encoding="utf-8", errors="replace", bufsize=1
        )
        self._means = _RailMeans()

    def _read(self) -> float:
        # Blocks until tegrastats prints its next line: the process sets the pace, not rate_hz.
        if self._process is None or self._process.stdout is None:
            raise ReadFailed("tegrastats is not running")
        line = self._process.stdout.readline()
        if not line:
            self._process.stdout.close()
            raise ReadFailed(f"tegrastats exited (status {self._process.poll()})")
        rails_w = parse_tegrastats_line(line)
        if not rails_w:
            raise ReadFailed(f"no rail in tegrastats line (some images need root for the rails): {line.strip()!r}")
        self._names = tuple(rails_w)
        self._means.add(rails_w)
        return total_w(rails_w)

    def _sample(self) -> tuple[int, float]:
        # Stamp the line's arrival, not the middle of a read that mostly waited for it.
        value = self._read()
        return time.perf_counter_ns(), value

    def _close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)

    def _rails(self) -> tuple[str, ...]:
        return self._names

    def _notes(self) -> tuple[str, ...]:
        return (
            f"tegrastats every {self.interval_ms} ms, stamped on arrival; {_total_note(self._names)}",
            self._means.note(),
            "scope module: the Jetson module only, not the carrier board",
        )
