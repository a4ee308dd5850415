"""Who a target is: board model, kernel, OS, architecture, and the Python and edgerun it runs.

Read with one remote command (each round trip over adb or a slow link costs), as
``key=value`` lines. Linux boards name themselves in ``/proc/device-tree/model``
(Raspberry Pi, Jetson); PCs in DMI. Android names itself through ``getprop``.

An emulated Linux device says so (``emulation``; the result's target block then has
``emulated: true``, as an Android emulator's does), from either of:

- user-mode emulation (qemu-user through binfmt_misc, tools/arm64_board.py): ``uname -m``
  is the emulated CPU (qemu answers the syscall), but ``/proc/sys/kernel/arch`` (kernel
  commit 52826d3b2d1d; older kernels lack it) is the kernel's own: aarch64 code on an
  x86_64 kernel cannot be a real board. qemu also fakes ``/proc/cpuinfo``, so the CPU
  line alone would lie;
- a first line in ``/etc/edgerun/emulated``, for images that know they are emulated where
  the kernel cannot tell (a full-system VM, a kernel without ``kernel.arch``).
  tools/arm64_board.py writes it.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any

from edgerun.errors import TargetSetupError
from edgerun.targets.base import Target

__all__ = ["TargetIdentity", "emulation_of", "identify", "require_edgerun"]

_VERSIONS = "import sys, edgerun; print(sys.version.split()[0], edgerun.__version__)"

_LINUX = r"""
echo "model=$(tr -d '\000' < /proc/device-tree/model 2>/dev/null || cat /sys/class/dmi/id/product_name 2>/dev/null)"
echo "cpu=$(grep -m1 -E '^(model name|Model|Hardware)' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
echo "kernel=$(uname -sr)"
echo "arch=$(uname -m)"
echo "hostname=$(uname -n)"
echo "os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") )"
echo "kernel_arch=$(cat /proc/sys/kernel/arch 2>/dev/null)"
echo "emulated=$(head -n 1 /etc/edgerun/emulated 2>/dev/null)"
"""

_ANDROID = r"""
echo "model=$(getprop ro.product.manufacturer) $(getprop ro.product.model)"
echo "cpu=$(getprop ro.soc.model)"
echo "kernel=$(uname -sr)"
echo "arch=$(getprop ro.product.cpu.abi)"
echo "hostname=$(getprop ro.product.device)"
echo "os=Android $(getprop ro.build.version.release) (SDK $(getprop ro.build.version.sdk))"
"""


@dataclass(frozen=True)
class TargetIdentity:
    """What a result records about the device it ran on (strings; "" when the device did not say)."""

    name: str
    url: str
    kind: str
    model: str
    cpu: str
    kernel: str
    os: str
    arch: str
    hostname: str
    python: str
    edgerun_version: str
    emulation: str = ""  # why this device is an emulation ("" for a real one)

    def to_dict(self) -> dict[str, Any]:
        """The facts; ``emulated: true`` and ``emulation`` only for an emulated device."""
        out = asdict(self)
        emulation = out.pop("emulation")
        return {**out, "emulated": True, "emulation": emulation} if emulation else out


_FAMILIES = (("x86", ("x86_64", "amd64", "i386", "i486", "i586", "i686")), ("arm", ("aarch64", "arm64", "arm")))


def _family(machine: str) -> str:
    """A 64-bit kernel runs its 32-bit siblings natively (armv7l on aarch64, i686 on x86_64)."""
    return next((name for name, prefixes in _FAMILIES if machine.startswith(prefixes)), machine)


def emulation_of(arch: str, kernel_arch: str, marker: str) -> str:
    """Why a Linux device is an emulation, or "": the image's own marker, else user code of
    another architecture than the kernel's (``uname -m`` vs ``/proc/sys/kernel/arch``)."""
    if marker:
        return marker
    if arch and kernel_arch and _family(arch) != _family(kernel_arch):
        return f"user-mode emulation: {arch} code on a {kernel_arch} kernel (qemu-user or similar)"
    return ""


def _versions_line(python: str | None) -> str:
    if not python:
        return 'echo "versions="'
    return f'echo "versions=$({shlex.quote(python)} -c {shlex.quote(_VERSIONS)} 2>/dev/null)"'


def identify(target: Target, timeout_s: float = 30.0) -> TargetIdentity:
    """Ask the device who it is. Transport failures raise; missing facts are empty strings."""
    script = (_ANDROID if target.spec.kind == "adb" else _LINUX) + _versions_line(target.python)
    done = target.run(["sh", "-c", script], timeout_s)
    facts: dict[str, str] = {}
    for line in done.text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    python, _, edgerun_version = facts.get("versions", "").partition(" ")
    return TargetIdentity(
        name=target.spec.label,
        url=target.spec.url,
        kind=target.spec.kind,
        model=facts.get("model", ""),
        cpu=facts.get("cpu", ""),
        kernel=facts.get("kernel", ""),
        os=facts.get("os", ""),
        arch=facts.get("arch", ""),
        hostname=facts.get("hostname", ""),
        python=python,
        edgerun_version=edgerun_version.strip(),
        emulation=emulation_of(facts.get("arch", ""), facts.get("kernel_arch", ""), facts.get("emulated", "")),
    )


def require_edgerun(target: Target, identity: TargetIdentity) -> None:
    """TargetSetupError, saying how to fix it, unless the device's Python imports edgerun."""
    if identity.edgerun_version:
        return
    where = target.python or "(no python configured)"
    if target.spec.kind == "adb":
        fix = "install Python on the device (e.g. Termux) and edgerun in it, pass python=..., or use runner=native"
    else:
        fix = f"run `edgerun target setup {target.spec.url}`, or pass --remote-python with an interpreter that has it"
    raise TargetSetupError(f"{target.spec.label}: no edgerun at {where} on the device: {fix}")
