"""Parse the console output of the native Android benchmark binaries users already push.

Formats (the source files named below; tests/fixtures/targets/README.md says where each recorded
output in tests/fixtures/targets/ comes from):

- LiteRT/TFLite ``benchmark_model`` (tensorflow/lite/tools/benchmark/benchmark_model.cc):
  ``Initialized session in 20.283ms.``; one ``count= first= curr= min= max= avg= std=`` line
  per phase (warm-up, then steady state; microseconds; ``std`` is the population standard
  deviation); ``Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
  Inference (avg): ..``; memory footprint lines in MB. **No percentiles**: the tool prints
  avg/std only.
- ``onnxruntime_perf_test`` (onnxruntime/test/perftest/performance_runner.cc): ``Session
  creation time cost: X s``, ``First inference time cost: X ms``, ``Average inference time
  cost: X ms``, ``Peak working set size: N bytes``, ``P50/P90/P95/P99/P999 Latency: X s``.
  Percentiles are the sorted latency at index ``floor(N*p)`` (no interpolation): never
  lower than nearest rank, so they judge conservatively. One fixed warm-up run; no min/max/std.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgerun.errors import MeasurementError

__all__ = ["NativeRun", "parse_benchmark_model", "parse_perf_test"]

_NUM = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT = re.compile(rf"count={_NUM}\s+first={_NUM}\s+curr={_NUM}\s+min={_NUM}\s+max={_NUM}\s+avg={_NUM}\s+std={_NUM}")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
    rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}"
)
_INIT = re.compile(rf"Initialized session in {_NUM}\s*ms")
_TFL_PEAK = re.compile(rf"Overall peak memory footprint \(MB\)[^:]*:\s*{_NUM}")
_TFL_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")
_ORT_LINES = {
    "session_s": re.compile(rf"Session creation time cost:\s*{_NUM}\s*s\b"),
    "first_ms": re.compile(rf"First inference time cost:\s*{_NUM}\s*ms"),
    "mean_ms": re.compile(rf"Average inference time cost:\s*{_NUM}\s*ms"),
    "peak_bytes": re.compile(rf"Peak working set size:\s*{_NUM}\s*bytes"),
    "cpu_pct": re.compile(rf"Avg CPU usage:\s*{_NUM}\s*%"),
    "requests": re.compile(rf"Total inference requests:\s*{_NUM}"),
}
_ORT_PCT = re.compile(rf"^P(\d+) Latency:\s*{_NUM}\s*s", re.MULTILINE)
_ORT_KEYS = {"50": "p50", "90": "p90", "95": "p95", "99": "p99", "999": "p99.9"}
_MB = 1024 * 1024  # benchmark_model divides bytes by 1024*1024 and prints "MB"


@dataclass(frozen=True)
class NativeRun:
    """What a native binary reported, in ns and bytes; None = the binary does not give it."""

    tool: str
    count: int | None
    mean_ns: float | None
    session_create_ns: int | None = None
    first_inference_ns: int | None = None
    warmup_mean_ns: float | None = None
    warmup_count: int | None = None
    min_ns: int | None = None
    max_ns: int | None = None
    std_ns: float | None = None  # benchmark_model: population standard deviation
    percentiles_ns: dict[str, int] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # tool-specific figures (trtexec: GPU compute, ...)


def _ns_us(value: str) -> int:
    return round(float(value) * 1000)


def parse_benchmark_model(text: str) -> NativeRun:
    """``benchmark_model`` console output -> NativeRun. ValueError when no steady-state line is there."""
    counts = [tuple(float(v) for v in m.groups()) for m in _COUNT.finditer(text)]
    timings = _TIMINGS.search(text)
    if not counts:
        raise MeasurementError("benchmark_model output has no 'count=... avg=... std=...' line")
    steady = counts[-1]
    if timings is not None:  # the steady line is the one whose avg the summary repeats
        steady = next((c for c in counts if round(c[5]) == round(float(timings.group(4)))), steady)
    warmup = next((c for c in counts if c is not steady), None)
    init = _INIT.search(text)
    peak = _TFL_PEAK.search(text)
    delta = _TFL_DELTA.search(text)
    notes = ["std is the population standard deviation (benchmark_model's Stat)"]
    if delta:
        notes.append(f"memory footprint delta (MB): init={delta.group(1)} overall={delta.group(2)}")
    return NativeRun(
        tool="benchmark_model",
        count=int(steady[0]),
        mean_ns=steady[5] * 1000,
        session_create_ns=_ns_us(timings.group(1))
        if timings
        else (round(float(init.group(1)) * 1e6) if init else None),
        first_inference_ns=_ns_us(timings.group(2)) if timings else None,
        warmup_mean_ns=float(timings.group(3)) * 1000 if timings else (warmup[5] * 1000 if warmup else None),
        warmup_count=int(warmup[0]) if warmup else None,
        min_ns=round(steady[3] * 1000),
        max_ns=round(steady[4] * 1000),
        std_ns=steady[6] * 1000,
        peak_memory_bytes=round(float(peak.group(1)) * _MB) if peak else None,
        notes=tuple(notes),
    )


def parse_perf_test(text: str, requested_runs: int | None = None) -> NativeRun:
    """``onnxruntime_perf_test`` console output -> NativeRun.

    The tool does not always print how many inferences it ran; ``requested_runs`` (its
    ``-r``) stands in, and a note says so. ValueError when the average line is missing.
    """
    found = {key: rx.search(text) for key, rx in _ORT_LINES.items()}
    if found["mean_ms"] is None:
        raise MeasurementError("onnxruntime_perf_test output has no 'Average inference time cost' line")
    value = {key: float(m.group(1)) for key, m in found.items() if m is not None}
    percentiles = {_ORT_KEYS[p]: round(float(s) * 1e9) for p, s in _ORT_PCT.findall(text) if p in _ORT_KEYS}
    notes = ["percentiles at index floor(N*p) of the sorted latencies (onnxruntime's method, not nearest rank)"]
    count = int(value["requests"]) if "requests" in value else requested_runs
    if "requests" not in value and requested_runs is not None:
        notes.append(f"inference count taken from the command line (-r {requested_runs}); the output does not print it")
    if "cpu_pct" in value:
        notes.append(f"average CPU usage {value['cpu_pct']:g}%")
    return NativeRun(
        tool="onnxruntime_perf_test",
        count=count,
        mean_ns=value["mean_ms"] * 1e6,
        session_create_ns=round(value["session_s"] * 1e9) if "session_s" in value else None,
        first_inference_ns=round(value["first_ms"] * 1e6) if "first_ms" in value else None,
        warmup_count=1,
        percentiles_ns=percentiles,
        peak_memory_bytes=round(value["peak_bytes"]) if "peak_bytes" in value else None,
        notes=tuple(notes),
    )
