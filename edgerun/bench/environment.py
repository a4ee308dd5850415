"""The environment a benchmark ran in, recorded with every result.

Cheap reads only (``/proc/cpuinfo``, ``platform``, installed package versions):
this runs once per benchmark, before the timed loop.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "psutil")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (x86 'model name', Arm 'Model'/'Hardware', else platform.processor())."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict[str, Any]:
    from edgerun import __version__

    uname = platform.uname()
    return {
        "edgerun_version": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "packages": package_versions(),
    }
