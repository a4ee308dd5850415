"""A native binary's figures as an ``edgerun.bench`` result (docs/lab.md, "Native results").

Same keys as an edgerun result wherever the binary gives the figure; ``null`` where it
does not, and ``runner.unavailable`` says which. Verdicts are judged only on what was
reported: the hard budget needs the maximum (benchmark_model prints it; for
onnxruntime_perf_test P999 is the maximum when fewer than 1000 runs were made), the
soft budget needs the chosen percentile with enough runs behind it. Anything else is
``not-valid``, never a pass.
"""

from __future__ import annotations

from typing import Any

from edgerun.targets.identity import TargetIdentity
from edgerun.targets.native_parse import NativeRun
from edgerun.targets.options import BenchOptions
from edgerun.targets.staging import StagedArtifact

__all__ = ["build_native_result", "native_verdicts"]

_ALWAYS_MISSING = ("stage breakdown (pre/post: the binary times the model call only)", "raw per-inference samples")


def _stats(run: NativeRun) -> dict[str, Any]:
    from edgerun.measure.stats import min_samples

    n = run.count or 0
    percentiles = {
        key: {"value_ns": value, "valid": n >= min_samples(float(key[1:])), "needed": min_samples(float(key[1:])),
              "ci95_ns": None}
        for key, value in run.percentiles_ns.items()
    }  # fmt: skip
    return {"n": n, "min_ns": run.min_ns, "mean_ns": run.mean_ns, "std_ns": run.std_ns, "max_ns": run.max_ns,
            "percentiles": percentiles}  # fmt: skip


def _under(value_ns: int, limit_ms: float) -> bool:
    """Strictly under the limit, by the rule of edgerun.budget."""
    from edgerun.budget import limit_ns

    return value_ns < limit_ns(limit_ms)


def _max_ns(run: NativeRun) -> int | None:
    if run.max_ns is not None:
        return run.max_ns
    # nearest index floor(N*0.999) is N-1, the maximum, whenever N < 1000 (peer-tools.md §2)
    if run.count is not None and run.count < 1000:
        return run.percentiles_ns.get("p99.9")
    return None


def native_verdicts(run: NativeRun, budget: Any, profile: Any, size_bytes: int) -> dict[str, Any]:
    """hard / soft / model_size Verdicts from what the binary reported."""
    from edgerun.budget import Verdict, judge_size
    from edgerun.measure.stats import min_samples, percentile_key

    n = run.count or 0
    worst = _max_ns(run)
    if worst is None:
        hard = Verdict(
            "hard", "not-valid", None, budget.hard_ms, "ms", f"{run.tool} does not report the maximum", None, n
        )
    else:
        ok = _under(worst, budget.hard_ms)
        side = "under" if ok else "at or over"
        why = f"worst of {n} = {worst / 1e6:.3f} ms ({side} the {budget.hard_ms:g} ms hard budget)"
        hard = Verdict("hard", "pass" if ok else "fail", worst / 1e6, budget.hard_ms, "ms", why, None, n)
    key, needed = percentile_key(budget.percentile), min_samples(budget.percentile)
    value = run.percentiles_ns.get(key)
    if value is None:
        soft = Verdict("soft", "not-valid", None, budget.soft_ms, "ms", f"{run.tool} does not report {key}", None, n)
    elif n < needed:
        soft = Verdict(
            "soft", "not-valid", value / 1e6, budget.soft_ms, "ms", f"{key} needs {needed} runs, had {n}", None, n
        )
    else:
        ok = _under(value, budget.soft_ms)
        why = f"{key} = {value / 1e6:.3f} ms is {'under' if ok else 'at or over'} the {budget.soft_ms:g} ms soft budget"
        soft = Verdict("soft", "pass" if ok else "fail", value / 1e6, budget.soft_ms, "ms", why, None, n)
    lim = profile.limits
    size = judge_size(size_bytes, lim.model_size_limit_bytes, lim.model_size_ideal_bytes)
    return {"hard": hard, "soft": soft, "model_size": size}


def _budget(options: BenchOptions, profile: Any) -> Any:
    from edgerun.budget import Budget

    base = profile.budget
    return Budget(
        soft_ms=options.soft_ms if options.soft_ms is not None else base.soft_ms,
        hard_ms=options.hard_ms if options.hard_ms is not None else base.hard_ms,
        percentile=options.percentile if options.percentile is not None else base.percentile,
    )


def _unavailable(run: NativeRun) -> list[str]:
    missing = list(_ALWAYS_MISSING)
    missing += [f"{key}" for key in ("p50", "p90", "p95", "p99", "p99.9") if key not in run.percentiles_ns]
    missing += [
        name for name, value in (("min", run.min_ns), ("max", run.max_ns), ("std", run.std_ns)) if value is None
    ]
    return missing


def _environment(identity: TargetIdentity, run: NativeRun) -> dict[str, Any]:
    return {
        "edgerun_version": None, "python": None, "implementation": None, "os": identity.os,
        "machine": identity.arch, "cpu_model": identity.cpu or identity.model, "logical_cpus": None,
        "usable_cpus": None, "packages": {}, "tool": run.tool,
    }  # fmt: skip


def _engine(run: NativeRun, staged: StagedArtifact, options: BenchOptions) -> dict[str, Any]:
    if run.tool == "trtexec":  # TensorRT itself, not onnxruntime: the precision flags are its build flags
        return {
            "name": "tensorrt",
            "version": run.details.get("tensorrt_version"),
            "providers": ["tensorrt"],
            "threads": None,
            "graph_optimization": None,
            "precision_flags": run.details.get("precision"),
        }
    return {"name": "litert" if staged.format == "tflite" else "onnx", "version": None,
            "providers": [p for p in (options.providers or "").split(",") if p], "threads": options.threads,
            "graph_optimization": None}  # fmt: skip


def _run_blocks(run: NativeRun, staged: StagedArtifact, options: BenchOptions) -> dict[str, Any]:
    """What the binary measured, under the keys an edgerun result uses."""
    stats = _stats(run)
    steady_ns = run.mean_ns * run.count if run.mean_ns and run.count else None
    return {
        "artifact": {"name": staged.name, "path": staged.remote_model, "format": staged.format,
                     "precision": staged.precision, "sha256": staged.sha256, "size_bytes": staged.size_bytes,
                     "manifest": None, "accuracy": staged.accuracy},
        "engine": _engine(run, staged, options),
        "config": {"min_runs": options.runs, "min_seconds": options.min_seconds, "max_seconds": options.max_seconds,
                   "warmup_runs": options.warmup, "warmup_seconds": options.warmup_seconds},
        "input_source": f"{run.tool}'s own inputs (random unless the binary was given input files)",
        "cold_start": {"artifact_load_ns": None, "session_create_ns": run.session_create_ns,
                       "first_inference": {"pre_ns": None, "infer_ns": run.first_inference_ns, "post_ns": None}},
        "warmup": {"runs": run.warmup_count, "duration_ns": None, "mean_ns": run.warmup_mean_ns},
        "steady": {"runs": run.count, "duration_ns": round(steady_ns) if steady_ns else None,
                   "throughput_per_s": 1e9 / run.mean_ns if run.mean_ns else None, "hit_max_seconds": None},
        "stats": {"pre": None, "infer": stats, "post": None, "total": stats},
        "stability": None, "samples_ns": None, "histogram_total": None, "sustained": None,
        "memory": {"peak_rss_steady_bytes": run.peak_memory_bytes, "source": run.tool}
        if run.peak_memory_bytes else None,
    }  # fmt: skip


def build_native_result(
    run: NativeRun,
    staged: StagedArtifact,
    options: BenchOptions,
    profile_and_reason: tuple[Any, str],
    identity: TargetIdentity,
    argv: list[str],
    charging: dict[str, Any],
    thermal: tuple[Any, Any],
    energy: dict[str, Any] | None,
) -> dict[str, Any]:
    """The result dict of one native run (docs/lab.md, "Native results")."""
    from edgerun.budget import overall

    profile, reason = profile_and_reason
    budget = _budget(options, profile)
    verdicts = native_verdicts(run, budget, profile, staged.size_bytes)
    runner: dict[str, Any] = {
        "kind": "native",
        "tool": run.tool,
        "argv": argv,
        "unavailable": _unavailable(run),
        "notes": list(run.notes),
    }
    if run.details:
        runner["details"] = run.details
    return {
        "status": "ok",
        "runner": runner,
        **_run_blocks(run, staged, options),
        "profile": {"name": profile.name, "reason": reason},
        "environment": _environment(identity, run),
        "budget": {"soft_ms": budget.soft_ms, "hard_ms": budget.hard_ms, "percentile": budget.percentile},
        "verdicts": {k: v.to_dict() for k, v in verdicts.items()},
        "overall": overall(verdicts.values()),
        "energy": energy,
        "thermal": _thermal(*thermal),
        "charging": charging,
        "warnings": [w for w in (charging.get("warning"),) if w] + _thermal_warnings(*thermal),
    }


def _thermal(before: Any, after: Any) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    from edgerun.measure.thermal import compare

    return {"before": before.to_dict(), "after": after.to_dict(), "flags": compare(before, after).to_dict()}


def _thermal_warnings(before: Any, after: Any) -> list[str]:
    block = _thermal(before, after)
    return [f"thermal: {r}" for r in block["flags"]["reasons"]] if block and block["flags"]["flagged"] else []
