"""Tests for edgerun.measure.stats: nearest-rank percentiles, validity, summaries, CIs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgerun.errors import UsageError
from edgerun.measure.stats import (
    EARLY_STOP_ALPHA,
    PERCENTILES,
    PercentileValue,
    histogram,
    mean_ci95,
    min_samples,
    percentile_key,
    percentile_nearest_rank,
    summarize,
)

ONE_TO_HUNDRED = list(range(1, 101))


# --- nearest rank -----------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [(1, 1), (50, 50), (50.5, 51), (90, 90), (99, 99), (99.9, 100), (100, 100), (0.001, 1)],
)
def test_nearest_rank_one_to_hundred(p: float, expected: int) -> None:
    assert percentile_nearest_rank(ONE_TO_HUNDRED, p) == expected


def test_nearest_rank_ten_samples_p90_is_ninth() -> None:
    values = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert percentile_nearest_rank(values, 90) == 90  # rank ceil(9.0) = 9
    assert percentile_nearest_rank(values, 90.1) == 100  # rank ceil(9.01) = 10
    assert percentile_nearest_rank(values, 50) == 50  # rank 5, no interpolation


def test_nearest_rank_is_exact_where_floats_are_not() -> None:
    # 99.9 / 100 * 1000 == 999.0000000000001 in floating point; the rank must be 999.
    values = list(range(1, 1001))
    assert percentile_nearest_rank(values, 99.9) == 999


def test_nearest_rank_single_sample_and_numpy_input() -> None:
    assert percentile_nearest_rank([7], 0.1) == 7
    assert percentile_nearest_rank(np.arange(1, 101), 99) == 99


def test_nearest_rank_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile_nearest_rank([], 50)
    for bad in (0, -1, 100.0001):
        with pytest.raises(ValueError, match=r"\(0, 100\]"):
            percentile_nearest_rank([1, 2, 3], bad)


# --- min_samples ------------------------------------------------------------


def test_min_samples_reproduces_loadgen() -> None:
    assert min_samples(90) == 64
    assert min_samples(99) == 662


def test_min_samples_other_percentiles() -> None:
    assert [min_samples(p) for p in PERCENTILES] == [10, 64, 130, 662, 6643]


def test_alpha_lies_in_the_window_that_gives_64_and_662() -> None:
    # The probability that no sample lands above the true quantile must drop
    # to alpha at exactly 64 (p90) and 662 (p99) samples, not one earlier.
    assert 0.9**64 <= EARLY_STOP_ALPHA < 0.9**63
    assert 0.99**662 <= EARLY_STOP_ALPHA < 0.99**661


@pytest.mark.parametrize("bad", [0, 100, -5, 150])
def test_min_samples_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        min_samples(bad)


# --- summarize ----------------------------------------------------------------


def test_summarize_one_to_hundred() -> None:
    stats = summarize(ONE_TO_HUNDRED)
    assert (stats.n, stats.min_ns, stats.max_ns) == (100, 1, 100)
    assert stats.mean_ns == pytest.approx(50.5)
    assert stats.std_ns == pytest.approx(np.std(ONE_TO_HUNDRED, ddof=1))
    assert stats.get(50) == PercentileValue(50.0, 50, True, 10, (40, 60))
    assert stats.get(90) == PercentileValue(90.0, 90, True, 64, (84, 96))
    assert stats.get(99) == PercentileValue(99.0, 99, False, 662, None)  # the tail is unseen: no interval
    assert stats.get(99.9) == PercentileValue(99.9, 100, False, 6643, None)


@pytest.mark.parametrize(("n", "valid"), [(63, False), (64, True)])
def test_p90_validity_threshold(n: int, valid: bool) -> None:
    assert summarize(range(1, n + 1)).get(90).valid is valid


@pytest.mark.parametrize(("n", "valid"), [(661, False), (662, True)])
def test_p99_validity_threshold(n: int, valid: bool) -> None:
    assert summarize(range(1, n + 1)).get(99).valid is valid


def test_summarize_single_sample_has_zero_std() -> None:
    stats = summarize([5_000_000])
    assert stats.std_ns == 0.0
    assert stats.mean_ns == 5_000_000.0
    assert all(v.value_ns == 5_000_000 for v in stats.percentiles)
    assert not any(v.valid for v in stats.percentiles)


def test_summarize_custom_percentiles_and_get_missing() -> None:
    stats = summarize(ONE_TO_HUNDRED, percentiles=(75,))
    assert stats.get(75).value_ns == 75
    with pytest.raises(UsageError, match="p75"):
        stats.get(99)


def test_summarize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="integer"):
        summarize([1.5, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        summarize([3, -1])
    with pytest.raises(ValueError, match="1-D"):
        summarize(np.ones((2, 2), dtype=np.int64))


def test_to_dict_is_json_ready() -> None:
    samples = np.arange(1_000_000, 1_000_100, dtype=np.int64)
    as_dict = summarize(samples).to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["n"] == 100 and as_dict["min_ns"] == 1_000_000
    assert type(as_dict["max_ns"]) is int
    assert list(as_dict["percentiles"]) == ["p50", "p90", "p95", "p99", "p99.9"]
    p90 = as_dict["percentiles"]["p90"]
    assert {k: p90[k] for k in ("value_ns", "valid", "needed")} == {"value_ns": 1_000_089, "valid": True, "needed": 64}
    assert p90["ci95_ns"][0] <= p90["value_ns"] <= p90["ci95_ns"][1]
    assert as_dict["percentiles"]["p99"]["valid"] is False


def test_percentile_key() -> None:
    assert [percentile_key(p) for p in PERCENTILES] == ["p50", "p90", "p95", "p99", "p99.9"]


# --- histogram ----------------------------------------------------------------


def test_histogram_counts_sum_to_n_and_edges_cover_samples() -> None:
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=15, sigma=0.5, size=5000).astype(np.int64)
    hist = histogram(samples, bins=20)
    assert sum(hist["counts"]) == 5000
    assert len(hist["edges_ns"]) == len(hist["counts"]) + 1 <= 21
    assert hist["edges_ns"][0] == samples.min()
    assert hist["edges_ns"][-1] == samples.max() + 1
    assert hist["edges_ns"] == sorted(set(hist["edges_ns"]))
    assert json.loads(json.dumps(hist)) == hist


def test_histogram_log_spacing() -> None:
    hist = histogram([1, 10, 100, 1000, 10_000 - 1], bins=4)
    assert hist["edges_ns"] == [1, 10, 100, 1000, 10_000]
    assert hist["counts"] == [1, 1, 1, 2]


@pytest.mark.parametrize("samples", [[0], [0, 0, 0], [7, 7], [0, 1, 2]])
def test_histogram_degenerate_ranges(samples: list[int]) -> None:
    hist = histogram(samples)
    assert sum(hist["counts"]) == len(samples)
    assert hist["edges_ns"][0] == min(samples)


def test_histogram_rejects_empty_and_bad_bins() -> None:
    with pytest.raises(ValueError):
        histogram([])
    with pytest.raises(ValueError):
        histogram([1, 2], bins=0)


# --- mean_ci95 ----------------------------------------------------------------


def test_mean_ci95_uses_student_t_for_n10() -> None:
    values = [float(v) for v in range(1, 11)]  # mean 5.5, s = sqrt(55/6)
    low, high = mean_ci95(values)
    half_width = 2.262157 * math.sqrt(55 / 6) / math.sqrt(10)
    assert (low + high) / 2 == pytest.approx(5.5)
    assert (high - low) / 2 == pytest.approx(half_width, rel=1e-6)
    assert (high - low) / 2 / (math.sqrt(55 / 6) / math.sqrt(10)) == pytest.approx(2.262, abs=5e-4)


@pytest.mark.parametrize(
    ("n", "t"),
    [(2, 12.706205), (31, 2.042272), (32, 2.039513), (41, 2.021075), (121, 1.979930)],
)
def test_mean_ci95_t_quantiles(n: int, t: float) -> None:
    # values 0, 1, 0, 1, ... have a known sample std; recover t from the half-width.
    values = np.array([i % 2 for i in range(n)], dtype=float)
    low, high = mean_ci95(values)
    standard_error = np.std(values, ddof=1) / math.sqrt(n)
    assert (high - low) / 2 / standard_error == pytest.approx(t, abs=2e-6)


def test_mean_ci95_rejects_too_few_or_non_finite() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        mean_ci95([1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_ci95([1.0, float("nan")])


def test_quantile_ci95_brackets_the_true_quantile_about_95_percent_of_the_time():
    from edgerun.measure.stats import quantile_ci95

    rng = np.random.default_rng(0)
    true_p99 = -np.log(0.01) * 1e6  # exponential, mean 1 ms in ns: P(X > x) = exp(-x / 1e6)
    hits = trials = 0
    for _ in range(400):
        x = np.sort((rng.exponential(size=2000) * 1e6).astype(np.int64))
        ci = quantile_ci95(x, 99)
        assert ci is not None and ci[0] <= ci[1]
        trials += 1
        hits += ci[0] <= true_p99 <= ci[1]
    assert 0.90 <= hits / trials <= 0.99


def test_quantile_ci95_is_none_when_the_tail_is_unseen():
    from edgerun.measure.stats import quantile_ci95

    assert quantile_ci95(np.arange(1, 101), 99) is None  # 100 samples cannot bound p99
    lo, hi = quantile_ci95(np.arange(1, 101), 50)
    assert lo < 50 < hi


def test_stability_warns_over_ten_percent():
    from edgerun.measure.stats import stability

    assert stability(summarize([1000] * 50 + [1001] * 50))["unstable"] is False
    noisy = stability(summarize([1000] * 50 + [2000] * 50))
    assert noisy["unstable"] is True and "50% of the mean" not in noisy["warning"] and "%" in noisy["warning"]
