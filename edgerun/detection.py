"""Device detection: which shipped device profile describes the machine we are running on.

``detect()`` reads a few cheap markers (``/proc/device-tree/model``,
``/etc/nv_tegra_release``, Android's ``getprop``) and returns the matching
profile with a one-sentence reason; anything unrecognised falls back to the
generic profile of its CPU architecture (x86_64, aarch64, armv7; else the x86_64
one), and the reason says "fallback profile". The profiles themselves (their
dataclasses, TOML loading and validation, lookup by name) live in
``edgerun.profiles``.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgerun._commands import CommandRunner, run_local
from edgerun._commands import no_commands as _no_commands
from edgerun.profiles import GENERIC_PROFILE, DeviceProfile, load_profile

__all__ = ["FALLBACK_MARK", "CommandRunner", "Detection", "detect", "run_local"]

#: Every fallback reason contains this phrase; the bench result repeats it in its warnings.
FALLBACK_MARK = "fallback profile"

#: The fallback for an unrecognised machine, by ``platform.machine()``: an arm64 board must
#: not be judged with an x86-64 desktop's RAM and power model. armv8l is a 32-bit userland
#: on a 64-bit core. Anything else (riscv64, ...) gets GENERIC_PROFILE, and its reason says so.
_ARCH_FALLBACKS = {
    "x86_64": GENERIC_PROFILE,
    "amd64": GENERIC_PROFILE,
    "aarch64": "generic-aarch64-linux",
    "arm64": "generic-aarch64-linux",
    "armv7l": "generic-armv7-linux",
    "armv7": "generic-armv7-linux",
    "armv8l": "generic-armv7-linux",
}

# CommandRunner: a callable that runs argv (on this machine, or later over ADB/SSH) and returns
# its stdout, or None when the command is missing or fails (edgerun/_commands.py).


@dataclass(frozen=True)
class Detection:
    """The profile detect() chose and a human sentence saying why."""

    profile: DeviceProfile
    reason: str


# A probe's answer: (profile name or None when recognised but unsupported, reason).
_Finding = tuple["str | None", str]
_PI_MODEL = re.compile(r"^(?:Raspberry Pi (?:Compute Module )?|Compute Module )(\d)")
_PI_PROFILES = {"4": "raspberry-pi-4", "5": "raspberry-pi-5"}
_L4T_RELEASE = re.compile(r"^# R(\d+) \(release\), REVISION: ([\d.]+)(?:.*?BOARD: (\w+))?")
_ORIN_NANO_MODULE = re.compile(r"nvidia,p3767-000[345]\b")  # Orin Nano 8GB/4GB/devkit SKUs


def detect(
    root: str | os.PathLike[str] = "/",
    run: CommandRunner | None = None,
    machine: str | None = None,
) -> Detection:
    """Pick the shipped profile for the device under ``root`` and say why.

    ``run`` answers commands such as ``getprop``; by default it runs them locally,
    but only when ``root`` is "/" (a fixture tree is not this machine). ``machine``
    is the CPU architecture that picks the fallback profile (default: ``platform.machine()``).
    """
    root_path = Path(root)
    runner: CommandRunner = run or (run_local if root_path.resolve() == Path("/") else _no_commands)
    notes: list[str] = []
    probes: list[Callable[[], _Finding | None]] = [
        lambda: _detect_raspberry_pi(root_path),
        lambda: _detect_jetson(root_path),
        lambda: _detect_android(runner),  # last: it runs commands, the others read files
    ]
    for probe in probes:
        finding = probe()
        if finding is None:
            continue
        name, reason = finding
        if name is not None:
            return Detection(load_profile(name), reason)
        notes.append(reason)
    return _fallback(root_path, notes, machine or platform.machine())


def _read_marker(path: Path) -> str | None:
    """A sysfs/procfs text file without its trailing NUL (device-tree strings end with one)."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace").strip("\0 \n")
    except OSError:
        return None


def _compatible(root: Path) -> list[str]:
    text = _read_marker(root / "proc/device-tree/compatible") or ""
    return [entry for entry in text.split("\0") if entry]


def _detect_raspberry_pi(root: Path) -> _Finding | None:
    model_path = root / "proc/device-tree/model"
    model = _read_marker(model_path)
    if not model or not (model.startswith(("Raspberry Pi", "Compute Module"))):
        return None
    match = _PI_MODEL.match(model)
    name = _PI_PROFILES.get(match.group(1)) if match else None
    if name is None:
        return None, f"found '{model}' in {model_path}, a Raspberry Pi with no shipped profile"
    return name, f"found '{model}' in {model_path}"


def _parse_l4t(release_path: Path) -> tuple[int, str, str] | None:
    """(major, revision, board) from nv_tegra_release's first line, e.g. (36, '4.3', 'generic')."""
    text = _read_marker(release_path)
    match = _L4T_RELEASE.match(text or "")
    if match is None:
        return None
    return int(match.group(1)), match.group(2), match.group(3) or "unknown"


def _detect_jetson(root: Path) -> _Finding | None:
    release_path = root / "etc/nv_tegra_release"
    l4t = _parse_l4t(release_path)
    compatible = _compatible(root)
    soc = next((c.split(",", 1)[1] for c in compatible if c.startswith("nvidia,tegra")), None)
    if l4t is None and soc is None:
        return None
    model = _read_marker(root / "proc/device-tree/model") or None
    facts = [f"'{model}'" if model else "(no device-tree model)"]
    if l4t is not None:
        facts.append(f"L4T R{l4t[0]}.{l4t[1]} (BOARD {l4t[2]}) in {release_path}")
    if soc is not None:
        facts.append(f"'nvidia,{soc}' in {root / 'proc/device-tree/compatible'}")
    found = "found Jetson " + ", ".join(facts)
    # R32 is JetPack 4 (Nano t210, TX2 t186, Xavier t194); R34-R36 are JetPack 5/6 (Orin
    # t234, whose BOARD reads t186ref or generic, so the major version decides); R38 is Thor.
    major, board = (l4t[0], l4t[2]) if l4t is not None else (0, "")
    is_nano = soc == "tegra210" or (soc is None and major == 32 and board.startswith("t210"))
    is_orin = soc == "tegra234" or (soc is None and 34 <= major <= 36)
    if is_nano:
        return "jetson-nano", found
    if not is_orin:
        return None, f"{found}: a Jetson with no shipped profile"
    return "jetson-orin-nano", found + _orin_module_note(model, compatible)


def _orin_module_note(model: str | None, compatible: list[str]) -> str:
    """Empty for an Orin Nano; otherwise why the Orin Nano profile stands in."""
    if (model and "Orin Nano" in model) or any(_ORIN_NANO_MODULE.search(c) for c in compatible):
        return ""
    stand_in = "so the smallest Orin profile stands in (conservative)"
    if model is None and not compatible:
        return f": which Orin module is unknown without the device tree, {stand_in}"
    return f": an Orin module other than the Orin Nano, {stand_in}"


def _getprop(run: CommandRunner, key: str) -> str:
    return (run(["getprop", key]) or "").strip()


def _detect_android(run: CommandRunner) -> _Finding | None:
    sdk = _getprop(run, "ro.build.version.sdk")
    if not sdk.isdigit():
        return None
    abi = _getprop(run, "ro.product.cpu.abi") or "unknown"
    model = _getprop(run, "ro.product.model") or "unknown model"
    found = f"getprop reports Android SDK {sdk}, ABI {abi}, model '{model}'"
    if "watch" in _getprop(run, "ro.build.characteristics").split(","):
        return "wearable-watch", f"{found}, and 'watch' in ro.build.characteristics (Wear OS)"
    if abi != "arm64-v8a":
        return "android-arm64-phone", (
            f"{found}; ABI {abi} is not arm64-v8a (an emulator or a 32-bit build?), "
            "so the arm64 phone profile is only the nearest match"
        )
    return "android-arm64-phone", found


def _fallback(root: Path, notes: list[str], machine: str) -> Detection:
    checked = f"{root / 'proc/device-tree/model'}, {root / 'etc/nv_tegra_release'}, getprop"
    if notes:
        why = "; ".join(notes)
    else:
        why = f"no Raspberry Pi, Jetson or Android markers found (checked {checked})"
    name = _ARCH_FALLBACKS.get(machine.lower())
    if name is not None:
        tail = (
            f"using {name}, the {FALLBACK_MARK} for {machine} machines: its cores, RAM, limits and "
            "power model are placeholders, not this machine's; pass a profile TOML of your own for real numbers"
        )
    else:
        name = GENERIC_PROFILE
        tail = (
            f"no shipped profile matches this {machine or 'unknown-architecture'} machine, so "
            f"{GENERIC_PROFILE} is only a {FALLBACK_MARK}: its architecture, cores, RAM and power "
            "model do not describe it; pass a profile TOML of your own for real numbers"
        )
    return Detection(load_profile(name), f"{why}; {tail}")
