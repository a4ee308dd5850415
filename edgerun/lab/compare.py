"""``edgerun lab compare BASELINE CANDIDATE``: did latency change, beyond noise, per artifact and device?

Each side is a lab database or an ``edgerun bench --json`` file. Results are matched by
artifact name, target name and options (threads, providers, engine); repetitions on a
side are pooled. For p50 and p99 of the end-to-end latency, on the raw samples:

- the change in percent, candidate against baseline;
- a 95% bootstrap interval for that change (both sides resampled, percentile by
  nearest rank as everywhere in edgerun; seeded, so a comparison is reproducible).
  The bootstrap is of the log of the ratio candidate/baseline, mapped back to percent:
  a latency can fall by at most 100%, and the interval stays in (-100%, +inf) (a
  difference divided by the point baseline did not: it printed -122%). With two or
  more repetitions on a side the bootstrap is hierarchical (repetitions, then samples),
  so the interval also covers run-to-run drift; with one it covers sampling noise
  only, and the reason says so;
- the run-to-run spread: the standard deviation of the per-repetition p50 (p99) between
  repetitions of a side (log scale, pooled over both sides), and the margin it implies
  for the difference of the sides, a two-sample t bound at 99% on the repetitions;
- for p50 also a one-sided Mann-Whitney U test (normal approximation with tie
  correction): is the candidate's latency stochastically larger?

A metric *regressed* when its change is over the threshold (default 5%), the whole
bootstrap interval is above zero, the candidate/baseline ratio is beyond the margin
(ratio > 1 + margin), and, for p50, the U test's p < alpha (default 0.01). Improvements
are the mirror image (ratio < 1 / (1 + margin)). Noise moves the estimate but leaves
zero inside the interval. The margin is there because a percentile bootstrap over two
or three repetitions understates the drift between runs (it cannot draw a repetition it
has not seen, and its quantiles of so few clusters are too narrow): on a loaded machine
it flagged identical configurations. A shift that repetitions of one configuration show
among themselves is not evidence of a change. With one repetition on both sides the
drift is unmeasured and no margin is applied (the reason says so).
A p99 from fewer samples than it needs to be valid (662, the LoadGen rule) is reported
and never gated on. Native-binary results carry no raw samples: they are listed, not tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import BenchError, LabError

__all__ = ["Comparison", "MetricChange", "compare_files", "compare_samples", "mann_whitney_greater"]

METRICS = (("p50", 50.0), ("p99", 99.0))
MAX_RESAMPLED = 4_000_000  # samples per side drawn by the bootstrap, to bound memory and time
HIERARCHICAL_ROUNDS = 600  # rounds of the (looped) two-level bootstrap


@dataclass(frozen=True)
class MetricChange:
    metric: str
    baseline_ns: int
    candidate_ns: int
    change_pct: float
    ci95_pct: tuple[float, float]  # always inside (-100, +inf): bootstrapped as a ratio
    spread_pct: float | None  # run-to-run sd of the percentile between repetitions; None: one repetition per side
    margin_pct: float | None  # what a change must exceed, from that spread (regression: over +margin)
    valid: bool  # enough samples on both sides for this percentile
    verdict: str  # regression | improvement | no change | unclear | not-valid


@dataclass(frozen=True)
class Comparison:
    artifact: str
    target: str
    options: str
    n_baseline: int
    n_candidate: int
    metrics: tuple[MetricChange, ...]
    mann_whitney_p: float | None
    verdict: str  # regression | improvement | no change | not comparable
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) and the sizes of tied groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    _, starts, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = starts + (counts + 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(average, counts)
    return ranks, counts


def mann_whitney_greater(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """One-sided p-value that ``candidate`` tends to be larger (normal approximation, tie-corrected)."""
    n_b, n_c = baseline.size, candidate.size
    ranks, ties = _ranks(np.concatenate([baseline, candidate]).astype(np.float64))
    u = ranks[n_b:].sum() - n_c * (n_c + 1) / 2.0
    n = n_b + n_c
    variance = n_b * n_c / 12.0 * ((n + 1) - float((ties**3 - ties).sum()) / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n_b * n_c / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


Side = Sequence[np.ndarray]  # one array of total-latency samples (ns) per repetition


def _quantiles(samples: np.ndarray, qs: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    picks = samples[rng.integers(0, samples.size, size=(rounds, samples.size))]
    return np.quantile(picks, qs, axis=1, method="inverted_cdf").T


def _bootstrap(side: Side, qs: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    """Bootstrap distribution (rounds x len(qs)) of a side's percentiles. With several repetitions it
    is hierarchical: repetitions are drawn with replacement, then samples within each, so the
    interval also covers run-to-run drift (a busier machine, a warmer board), not only sampling noise."""
    if len(side) == 1:
        return _quantiles(side[0], qs, rng, rounds)
    rounds = min(rounds, HIERARCHICAL_ROUNDS)
    sizes = {part.size for part in side}
    if len(sizes) == 1:  # equal repetitions (the lab's case): whole chunks of rounds at once
        stack, (n,) = np.stack(side), sizes
        chunks = []
        chunk = max(1, MAX_RESAMPLED // stack.size)
        for start in range(0, rounds, chunk):
            k = min(chunk, rounds - start)
            reps = rng.integers(0, len(side), size=(k, len(side), 1))
            draw = stack[reps, rng.integers(0, n, size=(k, len(side), n))].reshape(k, -1)
            chunks.append(np.quantile(draw, qs, axis=1, method="inverted_cdf").T)
        return np.concatenate(chunks)
    out = np.empty((rounds, qs.size))
    for b in range(rounds):
        chosen = [side[i] for i in rng.integers(0, len(side), len(side))]
        draw = np.concatenate([part[rng.integers(0, part.size, part.size)] for part in chosen])
        out[b] = np.quantile(draw, qs, method="inverted_cdf")
    return out


# Student's t, 0.995 quantile, by degrees of freedom (1..30; above, the 30 value: slightly wide).
# fmt: off
_T995 = (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012, 2.977, 2.947,
         2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779, 2.771, 2.763, 2.756, 2.750)
# fmt: on


def _spread(base: Side, cand: Side, q: float) -> tuple[float, float] | None:
    """(run-to-run sd, margin) in log units, from the per-repetition percentiles, or None.

    The sd is that of the log percentile between repetitions of one side (pooled over the
    sides, each around its own mean). The margin is what a change must exceed: a two-sample
    t bound at 99% on the repetition means, t(0.995, k+m-2) x sd x sqrt(1/k + 1/m). It is
    None when there is no second repetition on either side (nothing measures the drift)."""
    if len(base) + len(cand) < 3:
        return None
    logs = [np.log([max(1.0, float(np.quantile(p, q / 100.0, method="inverted_cdf"))) for p in side])
            for side in (base, cand)]  # fmt: skip
    df = len(base) + len(cand) - 2
    sd = math.sqrt(sum(float(((x - x.mean()) ** 2).sum()) for x in logs) / df)
    return sd, _T995[min(df, len(_T995)) - 1] * sd * math.sqrt(1 / len(base) + 1 / len(cand))


def _verdict(name: str, ratio: float, ci: tuple[float, float], margin: float, valid: bool,
             threshold_pct: float, mw_p: float, alpha: float) -> str:  # fmt: skip
    slower = mw_p < alpha if name == "p50" else True
    faster = (1.0 - mw_p) < alpha if name == "p50" else True
    change = (ratio - 1.0) * 100.0
    beyond = math.exp(margin)  # in ratio terms: a margin of x1.2 asks for x1.2 slower or x1/1.2 faster
    if not valid:
        return "not-valid"
    if change > threshold_pct and ci[0] > 0 and slower and ratio > beyond:
        return "regression"
    if change < -threshold_pct and ci[1] < 0 and faster and ratio < 1.0 / beyond:
        return "improvement"
    return "unclear" if abs(change) > threshold_pct else "no change"


def _metrics(base: Side, cand: Side, threshold_pct: float, mw_p: float, alpha: float,
             rng: np.random.Generator) -> tuple[MetricChange, ...]:  # fmt: skip
    from edgerun.measure.stats import min_samples

    pooled_b, pooled_c = np.concatenate(base), np.concatenate(cand)
    qs = np.array([q / 100.0 for _, q in METRICS])
    rounds = max(200, min(2000, MAX_RESAMPLED // max(pooled_b.size, pooled_c.size)))
    # log(ratio) of the bootstrapped statistics; 1 ns floors keep a zero-latency sample finite.
    boot_b, boot_c = _bootstrap(base, qs, rng, rounds), _bootstrap(cand, qs, rng, rounds)
    n = min(len(boot_b), len(boot_c))
    log_ratio = np.log(np.maximum(boot_c[:n], 1.0)) - np.log(np.maximum(boot_b[:n], 1.0))
    out = []
    for i, (name, q) in enumerate(METRICS):
        b = float(np.quantile(pooled_b, q / 100.0, method="inverted_cdf"))
        c = float(np.quantile(pooled_c, q / 100.0, method="inverted_cdf"))
        lo, hi = (float(np.expm1(x) * 100.0) for x in np.percentile(log_ratio[:, i], (2.5, 97.5)))
        ratio = max(c, 1.0) / max(b, 1.0)
        spread = _spread(base, cand, q)
        sd_pct, margin_pct = (None, None) if spread is None else (float(np.expm1(x) * 100.0) for x in spread)
        valid = min(pooled_b.size, pooled_c.size) >= min_samples(q)
        verdict = _verdict(name, ratio, (lo, hi), spread[1] if spread else 0.0, valid, threshold_pct, mw_p, alpha)
        change = (ratio - 1.0) * 100.0
        out.append(MetricChange(name, round(b), round(c), change, (lo, hi), sd_pct, margin_pct, valid, verdict))
    return tuple(out)


def compare_samples(
    baseline: np.ndarray | Side,
    candidate: np.ndarray | Side,
    threshold_pct: float = 5.0,
    alpha: float = 0.01,
    seed: int = 0,
) -> tuple[tuple[MetricChange, ...], float]:
    """p50 and p99 changes of ``candidate`` against ``baseline``, and the U test's p.

    Each side is an array of ns samples, or a list of arrays, one per repetition.
    """
    base = [baseline] if isinstance(baseline, np.ndarray) else list(baseline)
    cand = [candidate] if isinstance(candidate, np.ndarray) else list(candidate)
    rng = np.random.default_rng(seed)
    mw_p = mann_whitney_greater(np.concatenate(base), np.concatenate(cand))
    return _metrics(base, cand, threshold_pct, mw_p, alpha, rng), mw_p


def _key(result: dict[str, Any]) -> tuple[str, str, str]:
    config = result.get("config") or {}
    target = (result.get("target") or {}).get("name") or "local"
    options = [f"threads={config['threads']}"] if config.get("threads") is not None else []
    options += [f"providers={','.join(config['providers'])}"] if config.get("providers") else []
    options += [f"engine={config['engine']}"] if config.get("engine") else []
    return str((result.get("artifact") or {}).get("name") or "?"), str(target), " ".join(options)


def _total_samples(result: dict[str, Any]) -> np.ndarray | None:
    samples = result.get("samples_ns")
    if not samples or "infer" not in samples:  # none, or a `serial tiny` result's (the DUT times inference only)
        return None
    return (
        np.asarray(samples["pre"], np.int64)
        + np.asarray(samples["infer"], np.int64)
        + np.asarray(samples["post"], np.int64)
    )


def load_side(path: str | Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Results of a lab database or a bench JSON file, grouped by (artifact, target, options); ok ones only."""
    path = Path(path)
    if not path.is_file():
        raise LabError(f"{path}: no such file (expected a lab database or an `edgerun bench --json` file)")
    if path.suffix == ".json":
        results = _bench_results(path)
    else:
        from edgerun.lab.store import LabStore

        store = LabStore(path, create=False)  # read-only: the file is left exactly as it was
        try:
            results = [r.result for r in store.results()]
        finally:
            store.close()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        if result.get("status") == "ok":
            groups.setdefault(_key(result), []).append(result)
    return groups


def _bench_results(path: Path) -> list[dict[str, Any]]:
    """The results of a bench JSON file, each checked for the shape compare reads (else one LabError)."""
    from edgerun.bench.result import read_result_file
    from edgerun.lab.store import check_result

    try:
        doc = read_result_file(str(path))
    except BenchError as exc:
        raise LabError(f"{path}: {exc}") from exc
    except (TypeError, KeyError, AttributeError) as exc:  # valid JSON, but not shaped like a result file
        raise LabError(f"{path}: not an edgerun bench result file ({type(exc).__name__}: {exc})") from exc
    results = doc.get("results")
    if not isinstance(results, list):
        raise LabError(f"{path}: `results` is not a list; expected an `edgerun bench --json` file")
    return [check_result(r, f"{path}: results[{i}]") for i, r in enumerate(results)]


def _pair(key: tuple[str, str, str], base: list[dict[str, Any]], cand: list[dict[str, Any]], threshold_pct: float,
          alpha: float) -> Comparison:  # fmt: skip
    b = [s for s in map(_total_samples, base) if s is not None]
    c = [s for s in map(_total_samples, cand) if s is not None]
    if not b or not c:
        return Comparison(*key, 0, 0, (), None, "not comparable", "no raw samples (native-binary results): not tested")
    base_ns, cand_ns = np.concatenate(b), np.concatenate(c)
    metrics, mw_p = compare_samples(b, c, threshold_pct, alpha)
    verdicts = {m.verdict for m in metrics}
    verdict = "regression" if "regression" in verdicts else "improvement" if "improvement" in verdicts else "no change"
    single = " (one repetition on a side: the interval covers sampling noise, not run-to-run drift)"
    none = " (one repetition on each side: no run-to-run spread to require; repeat the runs for that)"
    reason = "; ".join(
        f"{m.metric} {m.change_pct:+.1f}% [{m.ci95_pct[0]:+.1f}, {m.ci95_pct[1]:+.1f}]"
        + (f" (run-to-run sd {m.spread_pct:.1f}%: needs over +{m.margin_pct:.1f}%)" if m.margin_pct else "")
        + f" {m.verdict}"
        for m in metrics
    )
    if max(len(b), len(c)) < 2:
        reason += none
    elif min(len(b), len(c)) < 2:
        reason += single
    return Comparison(*key, base_ns.size, cand_ns.size, metrics, mw_p, verdict, reason)


def compare_files(
    baseline: str | Path, candidate: str | Path, threshold_pct: float = 5.0, alpha: float = 0.01
) -> list[Comparison]:
    """Every (artifact, target, options) present on both sides, compared; the others are left out."""
    base, cand = load_side(baseline), load_side(candidate)
    return [_pair(key, base[key], cand[key], threshold_pct, alpha) for key in sorted(base.keys() & cand.keys())]
