"""Who a target is: board model, kernel, OS, architecture, and the Python and edgerun it runs.

Read with one remote command (each round trip over adb or a slow link costs), as
``key=value`` lines. Linux boards name themselves in ``/proc/device-tree/model``
(Raspberry Pi, Jetson); PCs in DMI. Android names itself through ``getprop``.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any

from edgerun.errors import TargetSetupError
from edgerun.targets.base import Target

__all__ = ["TargetIdentity", "identify", "require_edgerun"]

_VERSIONS = "import sys, edgerun; print(sys.version.split()[0], edgerun.__version__)"

_LINUX = r"""
echo "model=$(tr -d '\000' < /proc/device-tree/model 2>/dev/null || cat /sys/class/dmi/id/product_name 2>/dev/null)"
echo "cpu=$(grep -m1 -E '^(model name|Model|Hardware)' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
echo "kernel=$(uname -sr)"
echo "arch=$(uname -m)"
echo "hostname=$(uname -n)"
echo "os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") )"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
