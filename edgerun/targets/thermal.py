"""Thermal readings of a target, with the same parser as local ones (``edgerun.measure.thermal``).

The device's thermal-zone and cpufreq files are read with one remote command, copied
into a small local tree, and handed to ``read_thermal(root=tree, run=device commands)``,
which also asks the device for ``vcgencmd get_throttled`` (Pi) and ``dumpsys
thermalservice`` (Android). The local tree's path is replaced by ``device:`` in the
provenance strings.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from edgerun.errors import TargetError
from edgerun.targets.base import Target, command_runner

__all__ = ["read_target_thermal", "target_cooldown"]

_MIRROR = r"""
for f in /sys/class/thermal/thermal_zone*/type /sys/class/thermal/thermal_zone*/temp \
         /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq \
         /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -r "$f" ] && printf 'sys/%s\t%s\n' "${f#*/sys/}" "$(cat "$f" 2>/dev/null)"
done
true
"""


def _mirror(text: str, root: Path) -> None:
    for line in text.splitlines():
        path, sep, value = line.partition("\t")
        if not sep or not path.startswith("sys/") or ".." in path:
            continue
        local = root / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(value + "\n", encoding="ascii", errors="replace")


def read_target_thermal(target: Target, timeout_s: float = 20.0) -> Any:
    """The target's ThermalState; never raises for a missing source (a note says what was missing)."""
    from edgerun.measure.thermal import read_thermal

    if target.spec.kind == "local":
        return read_thermal()
    run = command_runner(target, timeout_s)
    with tempfile.TemporaryDirectory(prefix="edgerun-thermal-") as tmp:
        root = Path(tmp)
        try:
            _mirror(target.run(["sh", "-c", _MIRROR], timeout_s).text, root)
        except TargetError as exc:
            state = read_thermal(root=None, run=run)
            return dataclasses.replace(state, notes=(*state.notes, f"sysfs not read: {exc}"))
        state = read_thermal(root=root, run=run)

    def clean(items: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s.replace(str(root), "device:") for s in items)

    return dataclasses.replace(state, sources=clean(state.sources), notes=clean(state.notes))


def target_cooldown(target: Target, until_c: float | None, pause_s: float | None, max_wait_s: float = 300.0) -> Any:
    """``edgerun.measure.thermal.cooldown`` with the target's own temperatures."""
    from edgerun.measure.thermal import cooldown

    return cooldown(until_c=until_c, pause_s=pause_s, max_wait_s=max_wait_s, read=lambda: read_target_thermal(target))
