"""The versioned benchmark result (JSON), built from a Measurement.

Format history (bump ``SCHEMA_VERSION`` on any change a reader must know about,
and describe it here, like pyperf does):

- 1 (edgerun 0.1): first version. A file holds ``{"schema": "edgerun.bench",
  "schema_version": 1, "created_utc", "edgerun_version", "results": [...]}``,
  one result per artifact; each result is ``status: "ok"`` with cold start,
  warm-up, steady-state stats per stage, raw samples and verdicts, or
  ``status: "error"`` with the error. docs/bench-result.md describes every
  field; edgerun/bench/result.schema.json is the machine-checkable schema.
- 2 (edgerun 0.1): every percentile gains ``ci95_ns`` (order-statistic 95%
  interval, null when the tail is unseen); an ``ok`` result gains ``stability``
  (coefficient of variation per stage, pyperf's 10% warning) and the optional
  sections ``memory``, ``energy``, ``thermal`` and ``sustained`` (null or absent
  when not measured). ``read_result_file`` still reads version 1 files,
  upgrading them in memory.
- 3 (edgerun 0.1): a result may come from a native benchmark binary on a device
  (``benchmark_model``, ``onnxruntime_perf_test``; edgerun.targets): it carries
  ``runner`` {``kind: "native"``, ``tool``, ``argv``, ``unavailable``, ``notes``}, and the
  figures the binary cannot give (pre/post stages, raw samples, stability, some
  percentiles) are null and named in ``runner.unavailable``. Version 2 files read
  unchanged.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edgerun.bench.environment import environment
from edgerun.bench.runner import BenchConfig, Measurement
from edgerun.budget import Budget, Verdict, judge_hard, judge_size, judge_soft, overall
from edgerun.errors import BenchError
from edgerun.measure.stats import histogram, min_samples, percentile_key, stability, summarize

SCHEMA = "edgerun.bench"
SCHEMA_VERSION = 3
STAGES = ("pre", "infer", "post", "total")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stage_samples(m: Measurement) -> dict[str, np.ndarray]:
    return {"pre": m.pre_ns, "infer": m.infer_ns, "post": m.post_ns, "total": m.pre_ns + m.infer_ns + m.post_ns}


def verdicts_for(m: Measurement, budget: Budget, profile: Any) -> dict[str, Verdict]:
    """End-to-end hard/soft verdicts, per-stage ones, model size and peak memory against the profile."""
    samples = _stage_samples(m)
    out = {
        "hard": judge_hard(samples["total"], budget),
        "soft": judge_soft(samples["total"], budget),
    }
    for stage in ("pre", "infer", "post"):
        out[f"{stage}.hard"] = judge_hard(samples[stage], budget, kind=f"{stage}.hard")
        out[f"{stage}.soft"] = judge_soft(samples[stage], budget, kind=f"{stage}.soft")
    if profile is not None:
        lim = profile.limits
        out["model_size"] = judge_size(
            m.runtime.artifact.size_bytes, lim.model_size_limit_bytes, lim.model_size_ideal_bytes
        )
        if m.memory is not None:
            from edgerun.budget import memory_verdicts

            out["peak_rss"] = memory_verdicts(m.memory, profile)["peak_rss"]
    return out


def artifact_block(a: Any) -> dict[str, Any]:
    """The artifact as every edgerun result names it (bench, serial host, tiny)."""
    prov = a.manifest.provenance if a.manifest else {}
    return {
        "name": a.name,
        "path": str(a.path),
        "format": a.format,
        "precision": a.precision,
        "sha256": a.sha256,
        "size_bytes": a.size_bytes,
        "manifest": str(a.manifest_path) if a.manifest_path else None,
        "accuracy": prov.get("accuracy"),
    }


def _thermal_block(m: Measurement) -> dict[str, Any] | None:
    if m.thermal_before is None or m.thermal_after is None:
        return None
    from edgerun.measure.thermal import compare

    flags = compare(m.thermal_before, m.thermal_after)
    return {"before": m.thermal_before.to_dict(), "after": m.thermal_after.to_dict(), "flags": flags.to_dict()}


def _soft_time_warning(m: Measurement, config: BenchConfig, budget: Budget, soft: Verdict) -> str | None:
    """How long a valid soft verdict would take, when --max-seconds cannot get there at the measured rate.

    A slow device (100 ms per inference) reaches p99's 662 samples only after ~66 s of
    steady state, past the default 60 s cap: without this the user only ever sees
    NOT-VALID and never learns what would fix it. Not said when the samples in hand
    already decide the verdict (a certain fail, or enough samples).
    """
    needed = min_samples(budget.percentile)
    n = int(m.infer_ns.size)
    if soft.status != "not-valid" or n >= needed or n == 0 or m.steady_ns <= 0:
        return None
    rate = n / (m.steady_ns / 1e9)  # inferences per second of steady state, as measured
    seconds = needed / rate
    if seconds <= config.max_seconds:
        return None
    name = percentile_key(budget.percentile)
    return (
        f"a valid soft {name} verdict needs {needed} samples: at the measured {rate:.3g} inferences/s that is "
        f"about {seconds:.0f} s of steady state, past --max-seconds {config.max_seconds:g}; "
        f"run with --max-seconds {math.ceil(seconds * 1.1)} (10% margin)"
        + (f" and --runs {needed} or more" if config.min_runs < needed else "")
    )


def _forecast(m: Measurement, config: BenchConfig, budget: Budget) -> str | None:
    from edgerun.bench.forecast import seconds_per_inference, soft_forecast

    per, basis = seconds_per_inference(m.warmup_runs, m.warmup_ns, sum(m.first_ns))
    return soft_forecast(per, basis, config, budget.percentile)


def _warnings(
    m: Measurement,
    stats: dict[str, Any],
    config: BenchConfig | None = None,
    budget: Budget | None = None,
    soft: Verdict | None = None,
    profile_reason: str = "",
) -> list[str]:
    """Things a reader must know before trusting the numbers."""
    from edgerun.detection import FALLBACK_MARK

    out = []
    if FALLBACK_MARK in profile_reason:
        # The detection reason says it once at the top; the verdicts (RAM, size, energy
        # estimate) lean on this profile, so the result says it where warnings are read.
        out.append(
            f"{FALLBACK_MARK}: no shipped device profile matched this machine, so RAM, model-size and "
            "power-model figures are placeholders (see profile.reason); pass --profile for real ones"
        )
    if config is not None and budget is not None:
        forecast = _forecast(m, config, budget)  # what the worker said after the warm-up, kept in the result
        if forecast:
            out.append(forecast)
    if config is not None and budget is not None and soft is not None:
        slow = _soft_time_warning(m, config, budget, soft)
        if slow:
            out.append(slow)
    warning = stability(stats["total"])["warning"]
    if warning:
        out.append(warning)
    if m.hit_max_seconds:
        out.append("max-seconds cut the steady state short of the stop rule")
    thermal = _thermal_block(m)
    if thermal and thermal["flags"]["flagged"]:
        out.extend(f"thermal: {r}" for r in thermal["flags"]["reasons"])
    if m.energy is not None and m.energy.source == "estimated":
        out.append(f"energy is an estimate ({m.energy.probe}, scope: {m.energy.scope}), not a measurement")
    if m.energy is not None and not m.energy.valid:
        # The table still prints the net figure; the reason (a not-idle baseline, windows too
        # short for the sensor) must be seen next to it.
        out.append(f"energy figure not valid: {m.energy.reason}")
    return out


def _engine_details(m: Measurement) -> dict[str, Any]:
    """onnxruntime: which provider ran each node, the provider options applied, the TensorRT engine cache."""
    details = dict(getattr(m.runtime.pipeline.session, "details", None) or {})
    if m.node_placement is not None:
        details["node_placement"] = m.node_placement
    return details


def build_result(
    m: Measurement, config: BenchConfig, budget: Budget, profile: Any, profile_reason: str
) -> dict[str, Any]:
    samples = _stage_samples(m)
    verdicts = verdicts_for(m, budget, profile)
    stats = {stage: summarize(samples[stage]) for stage in STAGES}
    # The overall verdict is end-to-end + size; stage verdicts are diagnostic.
    headline = [v for k, v in verdicts.items() if "." not in k]
    li = m.runtime.load_info
    n = int(m.infer_ns.size)
    return {
        "status": "ok",
        # model_version: the model-store version a "name@current" reference resolved to (docs/update.md)
        "artifact": {**artifact_block(m.runtime.artifact), **_model_version(li)},
        "profile": {"name": profile.name if profile else None, "reason": profile_reason},
        "engine": {
            "name": li.engine,
            "version": li.engine_version,
            "providers": list(li.providers),
            "threads": li.threads,
            "threads_source": li.threads_detail,  # edgerun.threads: explicit > profile > usable CPUs, capped
            "graph_optimization": config.graph_optimization,
            **_engine_details(m),
        },
        "environment": environment(),
        "config": config.to_dict(),
        "budget": {"soft_ms": budget.soft_ms, "hard_ms": budget.hard_ms, "percentile": budget.percentile},
        "input_source": m.input_source,
        "cold_start": {
            "artifact_load_ns": li.artifact_ns,
            "session_create_ns": li.session_ns,
            "first_inference": dict(zip(("pre_ns", "infer_ns", "post_ns"), m.first_ns)),
        },
        "warmup": {"runs": m.warmup_runs, "duration_ns": m.warmup_ns},
        "steady": {
            "runs": n,
            "duration_ns": m.steady_ns,
            "throughput_per_s": n / (m.steady_ns / 1e9) if m.steady_ns else None,
            "hit_max_seconds": m.hit_max_seconds,
        },
        "stats": {stage: stats[stage].to_dict() for stage in STAGES},
        "stability": {stage: stability(stats[stage]) for stage in STAGES},
        "samples_ns": {stage: samples[stage].tolist() for stage in ("pre", "infer", "post")},
        "histogram_total": histogram(samples["total"]),
        "verdicts": {k: v.to_dict() for k, v in verdicts.items()},
        "overall": overall(headline),
        "memory": m.memory.to_dict() if m.memory is not None else None,
        "energy": m.energy.to_dict() if m.energy is not None else None,
        "thermal": _thermal_block(m),
        "warnings": _warnings(m, stats, config, budget, verdicts["soft"], profile_reason),
        "sustained": sustained_drift(m.start_ns, samples["total"], m.steady_ns) if config.sustained_minutes else None,
    }


def _model_version(li: Any) -> dict[str, str]:
    return {"model_version": li.model_version} if getattr(li, "model_version", "") else {}


def error_result(path: str, exc: BaseException, profile: Any, profile_reason: str) -> dict[str, Any]:
    return {
        "status": "error",
        "artifact": {"path": str(path)},
        "profile": {"name": profile.name if profile else None, "reason": profile_reason},
        "environment": environment(),
        "error": {"type": type(exc).__name__, "message": str(exc)},
        "overall": "error",
    }


def result_file(
    results: list[dict[str, Any]], schema: str = SCHEMA, schema_version: int = SCHEMA_VERSION
) -> dict[str, Any]:
    """The file around a list of results (other result families pass their own schema name and version)."""
    from edgerun import __version__

    return {
        "schema": schema,
        "schema_version": schema_version,
        "created_utc": utc_now(),
        "edgerun_version": __version__,
        "results": results,
    }


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a result file of any supported schema version up to ``SCHEMA_VERSION`` (in memory)."""
    if doc.get("schema") != SCHEMA:
        raise BenchError(f"not an edgerun benchmark result (schema {doc.get('schema')!r}, expected {SCHEMA!r})")
    version = doc.get("schema_version")
    if version == SCHEMA_VERSION:
        return doc
    if version == 2:  # version 3 only added the native-runner variant
        return {**doc, "schema_version": SCHEMA_VERSION, "upgraded_from": version}
    if version != 1:
        raise BenchError(f"result schema_version {version!r} is not supported (this edgerun reads 1..{SCHEMA_VERSION})")
    for res in doc.get("results", []):
        if res.get("status") != "ok":
            continue
        for stage in res["stats"].values():
            for pct in stage["percentiles"].values():
                pct.setdefault("ci95_ns", None)
        res.setdefault("stability", {stage: _stability_from_dict(st) for stage, st in res["stats"].items()})
        for section in ("memory", "energy", "thermal", "sustained"):
            res.setdefault(section, None)  # not measured by edgerun versions that wrote schema 1
        res.setdefault("warnings", [])
    return {**doc, "schema_version": SCHEMA_VERSION, "upgraded_from": version}


def _stability_from_dict(stats: dict[str, Any]) -> dict[str, Any]:
    from edgerun.measure.stats import Stats

    return stability(Stats(stats["n"], stats["min_ns"], stats["mean_ns"], stats["std_ns"], stats["max_ns"], ()))


def read_result_file(path: str) -> dict[str, Any]:
    """Read a result file written by any edgerun version this one understands."""
    from edgerun._jsonio import RESULT_MAX_BYTES, read_json

    return upgrade(read_json(path, what="bench result file", error=BenchError, max_bytes=RESULT_MAX_BYTES))


def sustained_drift(start_ns: np.ndarray, total_ns: np.ndarray, duration_ns: int) -> dict[str, Any]:
    """First vs last window of a sustained run: has latency drifted (heat, throttling, memory)?

    The windows are one minute long, or a quarter of the run when it is shorter than
    four minutes. Drift is (last - first) / first, in percent, for p50 and p99.
    """
    window_ns = min(60_000_000_000, duration_ns // 4)
    first = total_ns[start_ns < window_ns]
    last = total_ns[start_ns >= duration_ns - window_ns]
    out: dict[str, Any] = {"duration_ns": duration_ns, "window_ns": window_ns}
    for name, part in (("first", first), ("last", last)):
        out[name] = summarize(part, (50.0, 99.0)).to_dict() if part.size else None
    if out["first"] and out["last"]:
        for key in ("p50", "p99"):
            a = out["first"]["percentiles"][key]["value_ns"]
            b = out["last"]["percentiles"][key]["value_ns"]
            out[f"{key}_drift_pct"] = (b - a) / a * 100 if a else None
    return out


def bench_one(
    path: str,
    config: BenchConfig,
    profile: Any,
    budget: Budget,
    reason: str,
    progress: Any = None,
    notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure one artifact and build its result; an edgerun error becomes an ``error`` result.

    What a worker process runs, and what ``edgerun bench --in-process`` runs directly.
    ``notice(text)`` hears, right after the warm-up, when the steady state cannot reach the
    samples a valid soft verdict needs (edgerun.bench.forecast); the result's warnings repeat it.
    """
    from edgerun.bench.forecast import seconds_per_inference, soft_forecast
    from edgerun.bench.runner import measure
    from edgerun.errors import EdgerunError

    def after_warmup(runs: int, ns: int, first_ns: int) -> None:
        text = soft_forecast(*seconds_per_inference(runs, ns, first_ns), config, budget.percentile)
        if text and notice is not None:
            notice(text)

    try:
        m = measure(path, config, profile, progress=progress, after_warmup=after_warmup)
        return build_result(m, config, budget, profile, reason)
    except EdgerunError as exc:
        return error_result(str(path), exc, profile, reason)
