"""``edgerun doctor``: what this machine offers a benchmark, and what it does not (and why).

Cheap checks only: which engines import and which providers they offer, which power
probes could run (each with its reason), which thermal sources exist, whether the
steady-state memory peak can be reset, and the device profile detected. Nothing is
benchmarked and no probe is started.
"""

from __future__ import annotations

import platform
from typing import Any


def _engines() -> list[dict[str, Any]]:
    from edgerun.errors import EngineUnavailable

    out: list[dict[str, Any]] = []
    try:
        from edgerun.engines.onnx import _ort

        ort = _ort()
        out.append(
            {
                "engine": "onnx",
                "available": True,
                "version": ort.__version__,
                "providers": list(ort.get_available_providers()),
                "reason": "",
            }
        )
    except EngineUnavailable as exc:
        out.append({"engine": "onnx", "available": False, "version": None, "providers": [], "reason": str(exc)})
    try:
        from edgerun.engines.litert import engine_version, interpreter_module

        mod = interpreter_module()
        out.append(
            {
                "engine": "litert",
                "available": True,
                "version": engine_version(),
                "providers": ["XNNPACK", "CPU", "delegate:/path/to/lib.so"],
                "reason": f"from {mod.__name__}",
            }
        )
    except EngineUnavailable as exc:
        out.append({"engine": "litert", "available": False, "version": None, "providers": [], "reason": str(exc)})
    return out


def _memory() -> dict[str, Any]:
    from edgerun.measure.memory import reset_peak, snapshot

    ok, why = reset_peak()
    snap = snapshot()
    return {
        "peak_reset": ok,
        "peak_reset_reason": why,
        "uss_readable": snap.uss_bytes is not None,
        "notes": list(snap.notes),
    }


def diagnose() -> dict[str, Any]:
    """Everything ``edgerun doctor`` reports, JSON-ready."""
    from edgerun import __version__
    from edgerun.bench.environment import cpu_model
    from edgerun.detection import detect
    from edgerun.measure.thermal import read_thermal
    from edgerun.power import discover

    found = detect()
    thermal = read_thermal()
    return {
        "edgerun_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "profile": {"name": found.profile.name, "reason": found.reason},
        "engines": _engines(),
        "probes": [
            {"name": name, "available": a.available, "reason": a.reason} for name, a in discover(profile=found.profile)
        ],
        "serial_meters": "ina219-csv, rdtech-um, ppk2, lpm01a: not auto-discovered (they need a port)",
        "thermal": {
            "sources": list(thermal.sources),
            "zones_c": thermal.zones_c,
            "cpu_freq_khz": {str(k): v for k, v in thermal.cpu_freq_khz.items()},
            "notes": list(thermal.notes),
        },
        "memory": _memory(),
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"edgerun {report['edgerun_version']}  Python {report['python']}  {report['machine']}  {report['cpu_model']}",
        f"profile   {report['profile']['name']}: {report['profile']['reason']}",
        "engines",
    ]
    for e in report["engines"]:
        state = f"{e['version']}  providers: {', '.join(e['providers'])}" if e["available"] else "missing"
        lines.append(f"  {'ok ' if e['available'] else 'NO '} {e['engine']:<8} {state}  {e['reason']}".rstrip())
    lines.append("power probes (first available measured probe is used; else the labelled estimate)")
    for p in report["probes"]:
        lines.append(f"  {'ok ' if p['available'] else 'no '} {p['name']:<16} {p['reason']}")
    lines.append(f"  ... {report['serial_meters']}")
    t = report["thermal"]
    lines.append("thermal   " + (", ".join(t["sources"]) or "no sources"))
    lines.extend(f"  note: {n}" for n in t["notes"])
    m = report["memory"]
    lines.append(
        f"memory    peak reset: {'yes' if m['peak_reset'] else 'no'} ({m['peak_reset_reason']}); "
        f"USS {'readable' if m['uss_readable'] else 'not readable'}"
    )
    return "\n".join(lines)
