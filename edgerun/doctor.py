"""``edgerun doctor``: what this machine offers a benchmark, and what it does not (and why).

Cheap checks only: which engines import and which providers they offer, which power
probes could run (each with its reason), which thermal sources exist, whether the
steady-state memory peak can be reset, and the device profile detected. Nothing is
benchmarked and no probe is started.

Each engine is imported in a child process of its own (``python -m edgerun.doctor
--probe-engine NAME``), all at once: an engine can die by a signal on import (an
onnxruntime build whose CPU detection trips over an emulator's /proc/cpuinfo), and that
must become one ``available: false`` entry naming the signal and the phase, not the end
of the doctor. The child reports its phase on stdout before each step, like the bench
worker does on its result pipe (edgerun.bench.worker). ``edgerun doctor`` exits 0 whenever
it prints the report, crashed engines included.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from time import monotonic
from typing import Any

ENGINES = ("onnx", "litert", "executorch")
# What the child imports, as the phase names it ("crashed with SIGSEGV while importing onnxruntime").
IMPORTING = {
    "onnx": "importing onnxruntime",
    "litert": "importing the LiteRT interpreter",
    "executorch": "importing ExecuTorch's runtime (and torch, which it loads)",
}
PROBE_TIMEOUT_S = 60.0  # an import that hangs (a driver probing hardware) must not hang the doctor
STDERR_WORDS = 200  # characters of a failed child's last stderr line quoted in its reason


def _probe(name: str, phase: Callable[[str], None]) -> dict[str, Any]:
    """The child's side: import one engine and describe it (runs in ``--probe-engine``)."""
    from edgerun.errors import EngineUnavailable

    phase(IMPORTING[name])
    try:
        if name == "onnx":
            from edgerun.engines.onnx import _ort

            ort = _ort()
            phase("listing onnxruntime's providers")
            version, providers, reason = ort.__version__, list(ort.get_available_providers()), ""
        elif name == "executorch":
            from edgerun.engines.executorch import ExecuTorchEngine, _runtime

            runtime = _runtime()  # the import a .pte session pays (torch: seconds), in this child only
            phase("listing ExecuTorch's backends")
            backends = sorted(runtime.Runtime.get().backend_registry.registered_backend_names)
            # the backends compiled into this runtime (a .pte uses those it was lowered to), then its CPU kernels
            version, providers, reason = ExecuTorchEngine().version(), [*backends, "CPU"], ""
        else:
            from edgerun.engines.litert import engine_version, interpreter_module

            mod = interpreter_module()
            phase("reading LiteRT's version")
            version, providers = engine_version(), ["XNNPACK", "CPU", "delegate:/path/to/lib.so"]
            reason = f"from {mod.__name__}"
    except EngineUnavailable as exc:
        return _entry(name, False, reason=str(exc))
    return _entry(name, True, version=version, providers=providers, reason=reason)


def _entry(
    name: str,
    available: bool,
    *,
    version: str | None = None,
    providers: list[str] | None = None,
    reason: str = "",
    crash: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "engine": name,
        "available": available,
        "version": version,
        "providers": providers or [],
        "reason": reason,
        "crash": crash,  # {signal, exit_status, phase} when the probing child died; else None
    }


def _engines(timeout_s: float = PROBE_TIMEOUT_S) -> list[dict[str, Any]]:
    """One child per engine, started together so the doctor waits for the slowest import only."""
    children = {
        name: subprocess.Popen(
            [sys.executable, "-m", "edgerun.doctor", "--probe-engine", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: a timeout kills whatever the engine started
        )
        for name in ENGINES
    }
    deadline = monotonic() + timeout_s
    return [_collect(name, proc, deadline, timeout_s) for name, proc in children.items()]


def _collect(name: str, proc: subprocess.Popen[bytes], deadline: float, timeout_s: float) -> dict[str, Any]:
    timed_out = False
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline - monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    phase, entry = "starting", None
    for line in out.decode("utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            msg = json.loads(line)
            if isinstance(msg, dict):
                phase = str(msg.get("phase", phase))
                entry = msg.get("entry", entry)
    if isinstance(entry, dict) and not timed_out and proc.returncode == 0:
        return entry
    status = proc.returncode
    sig = signal.Signals(-status).name if status < 0 and not timed_out else None
    if timed_out:
        reason = f"did not answer within {timeout_s:g} s while {phase} (killed)"
    elif sig:
        reason = f"crashed with {sig} while {phase}: this engine cannot be used on this machine"
    else:
        reason = f"exited with status {status} while {phase}"
        last = err.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        if last:
            reason += f": {last[0][:STDERR_WORDS]}"
    crash = {"signal": sig, "exit_status": None if timed_out else status, "phase": phase}
    return _entry(name, False, reason=reason, crash=crash)


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
        if e["available"]:
            state = f"{e['version']}  providers: {', '.join(e['providers'])}  "
        else:  # a crash's reason says it all; "missing" would send the user to pip for nothing
            state = "" if e.get("crash") else "missing  "
        lines.append(f"  {'ok ' if e['available'] else 'NO '} {e['engine']:<10} {state}{e['reason']}".rstrip())
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


def _probe_main(argv: list[str]) -> int:
    """``python -m edgerun.doctor --probe-engine NAME``: one JSON line per phase, then the entry."""
    if len(argv) != 2 or argv[0] != "--probe-engine" or argv[1] not in ENGINES:
        print(f"usage: python -m edgerun.doctor --probe-engine {{{','.join(ENGINES)}}}; got {argv}", file=sys.stderr)
        return 2
    # Native engines print banners on stdout: the answer goes to a copy of stdout taken first,
    # and stdout itself now points at stderr, which the doctor only quotes from.
    answer = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)

    def send(msg: dict[str, Any]) -> None:
        answer.write(json.dumps(msg) + "\n")  # line-buffered: the phase is out before the step runs

    send({"entry": _probe(argv[1], lambda phase: send({"phase": phase}))})
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))
