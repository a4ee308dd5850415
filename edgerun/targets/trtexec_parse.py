"""Parse the console output of NVIDIA's ``trtexec`` (TensorRT's benchmark tool, e.g. on a Jetson).

The format is the one ``samples/common/sampleReporting.cpp`` in github.com/NVIDIA/TensorRT
prints (``printProlog`` / ``printEpilog``); tests/fixtures/targets/README.md says which tag
each fixture follows. Every line goes through ``sample::gLogInfo``, which prefixes
``[MM/DD/YYYY-HH:MM:SS] [I] `` (samples/common/logging.h); the prefix is ignored here.
Three generations of the summary:

- TensorRT 8.5 to 11.x: ``=== Performance summary ===``, ``Throughput: X qps``, then one line
  each for ``Latency``, ``Enqueue Time``, ``H2D Latency``, ``GPU Compute Time``, ``D2H Latency``:
  ``min = X ms, max = X ms, mean = X ms, median = X ms, percentile(90%) = X ms, ...``
  (``--percentile``, default 90,95,99), ``Total Host Walltime: X s``.
- TensorRT 8.0 to 8.4: the same lines with one ``percentile(99%)``; 8.0 to 8.2 also print an
  ``End-to-End Host Latency`` line (removed in the 8.4 sample update, commit 64988875).
- TensorRT 7.x: a ``Host latency`` block (``min: X ms (end to end Y ms)`` ... ``percentile: X ms
  at 99% (...)``, ``throughput: X qps``, ``walltime: X s``), then a ``GPU Compute`` block.

What becomes the result's inference time: ``Latency`` (7.x: ``Host latency``) = H2D + GPU
compute + D2H of one query, trtexec's own per-query latency. GPU compute, enqueue and the
copies are kept apart in ``details``. Percentiles are trtexec's: the sorted value at index
``max(N - 1 - floor((1 - p/100) * N), 0)`` (``findPercentile``); the median is the mean of
the two middle values for an even N (``findMedian``), so it is kept as ``median``, not p50.
"""

from __future__ import annotations

import re
from typing import Any

from edgerun.errors import MeasurementError
from edgerun.targets.native_parse import NativeRun

__all__ = ["parse_trtexec"]

_NUM = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|inf|nan)"
_PREFIX = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[[A-Z]\] ", re.MULTILINE)
_PERF = re.compile(
    rf"^(?P<what>[A-Za-z0-9 -]+?): min = {_NUM} ms, max = {_NUM} ms, mean = {_NUM} ms, median = {_NUM} ms"
    r"(?P<pcts>(?:, percentile\([0-9.]+%\) = [^,\n]+ ms)*)\s*$",
    re.MULTILINE,
)
_PCT = re.compile(rf"percentile\(([0-9.]+)%\) = {_NUM} ms")
_KEYS = {  # the summary's line names -> details keys
    "Latency": "latency",
    "End-to-End Host Latency": "end_to_end",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
}
_LINES = {
    "throughput_qps": re.compile(rf"^Throughput: {_NUM} qps", re.MULTILINE | re.IGNORECASE),
    "walltime_s": re.compile(rf"^(?:Total Host Walltime|walltime): {_NUM} s", re.MULTILINE),
    "gpu_total_s": re.compile(rf"^(?:Total GPU Compute Time|total compute time): {_NUM} s", re.MULTILINE),
    "build_s": re.compile(rf"^Engine built in {_NUM} sec", re.MULTILINE),
    "deserialize_s": re.compile(rf"^Engine deserialized in {_NUM} sec", re.MULTILINE),
    "engine_mib": re.compile(rf"^Created engine with size: {_NUM} MiB", re.MULTILINE),
    "warmup_ms": re.compile(rf"^Warmup completed (\d+) queries over {_NUM} ms", re.MULTILINE),
    "queries": re.compile(rf"^Timing trace has (\d+) queries over {_NUM} s", re.MULTILINE),
}
_VERSION = re.compile(r"^TensorRT version: (\S+)", re.MULTILINE)
_BUILD_VERSION = re.compile(r"\[TensorRT v(\d+)\]")
_PRECISION = re.compile(r"^Precision: (.+)$", re.MULTILINE)
_FAILED = re.compile(r"^&&&& FAILED", re.MULTILINE)
_PASSED = re.compile(r"^&&&& PASSED", re.MULTILINE)  # Logger::reportPass (samples/common/logging.h)
# TensorRT 7.x: "Host latency" / "GPU Compute" blocks of "key: value ms" lines
_OLD_BLOCK = re.compile(r"^(Host latency|GPU Compute)\s*$", re.MULTILINE)
_OLD_LINE = re.compile(rf"^(min|max|mean|median|percentile): {_NUM} ms(?: at ([0-9.]+)%)?", re.MULTILINE)
_MS_NS = 1e6


def _pct_key(p: str) -> str:
    return f"p{float(p):g}"


def _stats_new(match: re.Match[str]) -> dict[str, Any]:
    lo, hi, mean, median = (float(match.group(i)) for i in (2, 3, 4, 5))
    pcts = {_pct_key(p): float(v) for p, v in _PCT.findall(match.group("pcts"))}
    return {"min_ms": lo, "max_ms": hi, "mean_ms": mean, "median_ms": median, "percentiles_ms": pcts}


def _stats_old(block: str) -> dict[str, Any]:
    found: dict[str, Any] = {"percentiles_ms": {}}
    for key, value, pct in _OLD_LINE.findall(block):
        if key == "percentile":
            found["percentiles_ms"][_pct_key(pct or "99")] = float(value)
        else:
            found[f"{key}_ms"] = float(value)
    return found


def _summaries(text: str) -> dict[str, dict[str, Any]]:
    out = {_KEYS[m.group("what")]: _stats_new(m) for m in _PERF.finditer(text) if m.group("what") in _KEYS}
    if out:
        return out
    blocks = list(_OLD_BLOCK.finditer(text))  # TensorRT 7.x
    for i, m in enumerate(blocks):
        end = blocks[i + 1].start() if i + 1 < len(blocks) else len(text)
        key = "latency" if m.group(1) == "Host latency" else "gpu_compute"
        stats = _stats_old(text[m.end() : end])
        if {"min_ms", "max_ms", "mean_ms"} <= stats.keys():
            out[key] = stats
    return out


def _build_version(tag: str) -> str:
    """``[TensorRT v8401]`` / ``[TensorRT v100300]`` -> "8.4.1" / "10.3.0": NV_TENSORRT_VERSION is
    major*1000 + minor*100 + patch up to 9.x (include/NvInferRuntimeBase.h, tag v8.6.1), and
    major*10000 + minor*100 + patch from 10.0 (NV_TENSORRT_VERSION_INT, tag v10.3.0)."""
    v = int(tag)
    major, rest = divmod(v, 10000) if v >= 100000 else divmod(v, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _number(text: str, key: str, group: int = 1) -> float | None:
    m = _LINES[key].search(text)
    return float(m.group(group)) if m else None


def parse_trtexec(text: str) -> NativeRun:
    """``trtexec`` console output -> NativeRun (ms -> ns). MeasurementError when there is no latency summary.

    A run that printed ``&&&& FAILED``, or whose output ends before ``&&&& PASSED`` (cut short), is
    an error even when a summary is there.
    """
    text = _PREFIX.sub("", text.replace("\r\n", "\n"))
    if _FAILED.search(text):
        raise MeasurementError("trtexec reported '&&&& FAILED'")
    summary = _summaries(text)
    latency = summary.get("latency")
    if latency is None or "mean_ms" not in latency:
        raise MeasurementError(
            "trtexec output has no latency summary ('Latency: min = ... ms' or TensorRT 7's 'Host latency' block)"
        )
    if not _PASSED.search(text):  # trtexec's last line; a summary without it was cut short
        raise MeasurementError("trtexec output ends before its '&&&& PASSED' line (cut short?)")
    queries = _LINES["queries"].search(text)
    warmup = _LINES["warmup_ms"].search(text)
    version = _VERSION.search(text)
    build_version = _BUILD_VERSION.search(text)
    precision = _PRECISION.search(text)
    build_s, deser_s = _number(text, "build_s"), _number(text, "deserialize_s")
    details: dict[str, Any] = {
        "tensorrt_version": version.group(1)
        if version
        else (_build_version(build_version.group(1)) if build_version else None),
        "precision": precision.group(1).strip() if precision else None,
        "throughput_qps": _number(text, "throughput_qps"),
        "total_host_walltime_s": _number(text, "walltime_s"),
        "total_gpu_compute_s": _number(text, "gpu_total_s"),
        "engine_build_s": build_s,
        "engine_deserialize_s": deser_s,
        "engine_size_mib": _number(text, "engine_mib"),
        "warmup_ms": float(warmup.group(2)) if warmup else None,
        "timings_ms": summary,
    }
    notes = [
        "inference time = trtexec's Latency (H2D + GPU compute + D2H of one query); GPU compute, enqueue "
        "and the copies are in runner.details.timings_ms",
        "percentiles by trtexec's rule: sorted value at index max(N-1-floor((1-p/100)*N), 0)",
    ]
    if build_s is not None:
        notes.append(f"TensorRT engine built in {build_s:g} s before timing (cold start, not steady state)")
    pcts = {k: round(v * _MS_NS) for k, v in latency["percentiles_ms"].items()}
    setup_s = build_s if build_s is not None else deser_s
    return NativeRun(
        tool="trtexec",
        count=int(queries.group(1)) if queries else None,
        mean_ns=latency["mean_ms"] * _MS_NS,
        session_create_ns=round(setup_s * 1e9) if setup_s is not None else None,
        warmup_count=int(warmup.group(1)) if warmup else None,
        min_ns=round(latency["min_ms"] * _MS_NS) if "min_ms" in latency else None,
        max_ns=round(latency["max_ms"] * _MS_NS) if "max_ms" in latency else None,
        percentiles_ns=pcts,
        notes=tuple(notes),
        details=details,
    )
