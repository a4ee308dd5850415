"""Before the steady state: can this run reach a valid soft verdict at all?

A soft verdict at p99 needs ``min_samples(99) = 662`` samples (edgerun.measure.stats). A model
at 0.48 s per inference needs ~5.3 min of steady state for them, and the default cap
(``--max-seconds 60``) stops it long before: the soft verdict can then only be "not valid",
or a certain fail once enough samples missed (edgerun.budget.judge_soft). The warm-up has
already measured the rate, so the worker says so right after it, not only after the run.

Pure functions of numbers; no engine, no clock.
"""

from __future__ import annotations

from edgerun.bench.config import BenchConfig
from edgerun.measure.stats import min_samples, percentile_key


def seconds_per_inference(warmup_runs: int, warmup_ns: int, first_ns: int) -> tuple[float, str]:
    """The rate the forecast uses and where it came from: the warm-up's mean, else the first
    inference (a cold one: slower than the steady state, so the forecast errs long)."""
    if warmup_runs > 0 and warmup_ns > 0:
        return warmup_ns / warmup_runs / 1e9, f"warm-up mean, n = {warmup_runs}"
    return max(first_ns, 0) / 1e9, "the first inference alone (no warm-up ran)"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def soft_forecast(per_inference_s: float, basis: str, config: BenchConfig, percentile: float) -> str | None:
    """The warning that the steady state will stop short of the samples a valid soft verdict needs
    at ``percentile``, at ``per_inference_s`` seconds per inference; None when it will not.

    The steady state stops once it has ``min_runs`` samples and ``min_seconds`` of time, or at
    ``max_seconds`` (edgerun.bench.runner). The cap is named when it alone keeps the run short of
    ``needed``; ``--runs`` when the stop rule ends the run early and the cap would not.
    """
    if per_inference_s <= 0:
        return None  # nothing measured (a zero-time clock): no rate to forecast from
    needed = min_samples(percentile)
    rate = 1 / per_inference_s
    by_rule = max(config.min_runs, rate * config.min_seconds)
    by_cap = rate * config.max_seconds
    if min(by_rule, by_cap) >= needed:
        return None
    name = percentile_key(percentile)
    each = f"{per_inference_s:.3g} s" if per_inference_s >= 0.1 else f"{per_inference_s * 1e3:.3g} ms"
    per = f"{each} per inference ({basis})"
    outcome = "the soft verdict will be not valid unless misses make it certain"
    if by_cap < needed:
        wanted = needed * per_inference_s
        return (
            f"{name} needs {needed} samples; at {per} that is ~{_duration(wanted)} "
            f"but --max-seconds is {config.max_seconds:g}: {outcome}"
        )
    return (
        f"{name} needs {needed} samples; at {per} --runs {config.min_runs} and --min-seconds "
        f"{config.min_seconds:g} stop the steady state at about {int(by_rule)}: {outcome} (pass --runs {needed})"
    )
