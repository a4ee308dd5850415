"""The versioned JSON result of a DUT session (``edgerun.tiny``), in the family of ``edgerun.bench``.

Format history (bump SCHEMA_VERSION on any change a reader must know about):

- 1 (edgerun 0.1): first version. A file is ``{"schema": "edgerun.tiny",
  "schema_version", "created_utc", "edgerun_version", "results": [...]}`` like
  a bench file; a result has ``stats`` and ``verdicts`` shaped as bench's.
  ``stats.single`` holds per-inference latencies of the accuracy phase (one
  ``infer 1 0`` per input, bracketed by the DUT's own timestamps): these are
  judged against the budgets. ``stats.perf_mean`` holds the performance runs'
  (T1 - T0) / N, one per run; ``performance.median_per_inference_ns`` is their
  median, as EEMBC's GUI reports the median of 5 inputs.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from edgerun.bench.result import result_file
from edgerun.budget import Budget, Verdict, judge_hard, judge_soft, overall
from edgerun.measure.stats import summarize
from edgerun.serialhost.tiny import TinyConfig, TinyRun

SCHEMA = "edgerun.tiny"
SCHEMA_VERSION = 1
#: MLPerf Tiny's minimum duration of one performance run (mlcommons/tiny benchmark/runner/main.py).
MIN_PERF_RUN_US = 10_000_000
TIMING_SOURCE = "DUT timestamps: m-lap-us-<u32 microseconds> around the inference loop"


def _accuracy(run: TinyRun) -> dict[str, Any]:
    n = len(run.files)
    correct = sum(f["correct"] for f in run.files)
    per_class: dict[str, dict[str, int]] = {}
    for f in run.files:
        entry = per_class.setdefault(str(f["label"]), {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += int(f["correct"])
    return {"top1": correct / n if n else None, "n": n, "correct": correct, "per_class": per_class}


def _performance(run: TinyRun) -> dict[str, Any]:
    per = [p["per_inference_ns"] for p in run.perf]
    median = statistics.median(per) if per else None
    return {
        "runs": run.perf,
        "median_per_inference_ns": median,
        "throughput_per_s": 1e9 / median if median else None,
    }


def _energy(run: TinyRun) -> dict[str, Any] | None:
    if not run.energy:
        return None
    per_j = [e["joules"] / e["iterations"] for e in run.energy]
    return {"source": "measured", "runs": run.energy, "median_j_per_inference": statistics.median(per_j)}


def _warnings(run: TinyRun, single: np.ndarray, perf: np.ndarray) -> list[str]:
    out = []
    if single.size and perf.size and np.median(single) > 0:
        ratio = float(np.median(perf) / np.median(single))
        if not 0.5 < ratio < 2.0:
            out.append(f"single-inference and N-averaged latencies differ by {ratio:.2f}x (caches? timer resolution?)")
    if single.size and int(single.min()) < 10_000:
        out.append("some single inferences took under 10 us: near the DUT timer's 1 us resolution")
    short = [p for p in run.perf if p["elapsed_us"] < MIN_PERF_RUN_US]
    if short:
        # MLPerf Tiny's runner rejects performance runs shorter than 10 s (main.py: "error 2")
        least = min(p["elapsed_us"] for p in short) / 1e6
        need = max(round(p["iterations"] * MIN_PERF_RUN_US / max(p["elapsed_us"], 1)) for p in short)
        out.append(
            f"{len(short)} of {len(run.perf)} performance runs took under MLPerf Tiny's 10 s minimum "
            f"(shortest {least:.3g} s): not valid for submission; use --iterations {need} or more"
        )
    return out


def build_tiny_result(run: TinyRun, config: TinyConfig, budget: Budget, environment: dict[str, Any]) -> dict[str, Any]:
    single = np.asarray([f["latency_ns"] for f in run.files if f["latency_ns"] is not None], dtype=np.int64)
    perf = np.asarray([p["per_inference_ns"] for p in run.perf], dtype=np.int64)
    verdicts: dict[str, Verdict] = {"hard": judge_hard(single, budget), "soft": judge_soft(single, budget)}
    info = run.info
    return {
        "status": "ok",
        "dut": {"name": info.name, "profile": info.profile, "model": info.model}
        | {"timestamp_mode": info.timestamp_mode, "port": config.port, "baud": config.baud},
        "dataset": {"path": str(run.dataset.path), "files": len(run.dataset.files), "classes": run.dataset.classes},
        "environment": environment,
        "config": {
            "iterations": config.iterations,
            "warmups": config.warmups,
            "perf_files": config.perf_files,
            "limit": config.limit,
        },
        "budget": {"soft_ms": budget.soft_ms, "hard_ms": budget.hard_ms, "percentile": budget.percentile},
        "timing_source": TIMING_SOURCE,
        "performance": _performance(run),
        "accuracy": _accuracy(run),
        "files": run.files,
        "stats": {
            "single": summarize(single).to_dict() if single.size else None,
            "perf_mean": summarize(perf).to_dict() if perf.size else None,
        },
        "samples_ns": {"single": single.tolist(), "perf_mean": perf.tolist()},
        "verdicts": {k: v.to_dict() for k, v in verdicts.items()},
        "energy": _energy(run),
        "overall": overall(verdicts.values()),
        "warnings": _warnings(run, single, perf),
    }


def tiny_result_file(results: list[dict[str, Any]]) -> dict[str, Any]:
    return result_file(results, SCHEMA, SCHEMA_VERSION)


def tiny_error_result(port: str, exc: BaseException, environment: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "error",
        "dut": {"port": port},
        "environment": environment,
        "error": {"type": type(exc).__name__, "message": str(exc)},
        "overall": "error",
    }
