"""Tests for edgerun.budget: hard, soft and size verdicts, and their combination."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgerun.budget import Budget, Verdict, allowed_misses, judge_hard, judge_size, judge_soft, overall
from edgerun.measure.stats import min_samples, percentile_nearest_rank

MS = 1_000_000  # ns per ms


def fast_samples(n: int, latency_ns: int = 2 * MS) -> np.ndarray:
    return np.full(n, latency_ns, dtype=np.int64)


# --- Verdict --------------------------------------------------------------------


def test_verdict_properties_and_dict() -> None:
    verdict = Verdict("hard", "not-valid", None, 10.0, "ms", "no samples to judge")
    assert (verdict.passed, verdict.valid) == (False, False)
    assert Verdict("x", "fail", 1.0, 1.0, "ms", "r").valid is True
    assert Verdict("x", "pass", 1.0, 1.0, "ms", "r").passed is True
    as_dict = verdict.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict == {
        "kind": "hard",
        "status": "not-valid",
        "passed": False,
        "valid": False,
        "measured": None,
        "limit": 10.0,
        "unit": "ms",
        "reason": "no samples to judge",
        "miss_rate": None,
        "n": 0,
    }


def test_verdict_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="status"):
        Verdict("hard", "ok", 1.0, 1.0, "ms", "")


# --- hard budget ------------------------------------------------------------------


def test_hard_all_under_passes() -> None:
    verdict = judge_hard(fast_samples(1000), Budget(hard_ms=10))
    assert verdict.status == "pass"
    assert verdict.measured == pytest.approx(2.0)
    assert (verdict.miss_rate, verdict.n, verdict.limit, verdict.unit) == (0.0, 1000, 10, "ms")


def test_hard_one_miss_in_a_thousand_fails() -> None:
    samples = np.append(fast_samples(999), 12_500_000)
    verdict = judge_hard(samples, Budget(hard_ms=10))
    assert verdict.status == "fail"
    assert verdict.measured == pytest.approx(12.5)
    assert verdict.miss_rate == pytest.approx(0.001)
    assert "1 of 1000" in verdict.reason
    assert "12.500 ms" in verdict.reason and "10 ms" in verdict.reason


def test_hard_exact_boundary_is_a_miss() -> None:
    budget = Budget(hard_ms=10)
    assert judge_hard([10 * MS - 1], budget).status == "pass"
    assert judge_hard([10 * MS], budget).status == "fail"


def test_hard_fractional_ms_boundary_is_exact() -> None:
    budget = Budget(hard_ms=0.0158)  # 0.0158 * 1e6 is 15800.000000000002 in floating point
    assert judge_hard([15_799], budget).status == "pass"
    assert judge_hard([15_800], budget).status == "fail"


def test_hard_no_samples_is_not_valid() -> None:
    verdict = judge_hard([], Budget())
    assert verdict.status == "not-valid" and verdict.n == 0 and verdict.measured is None


def test_hard_kind_is_passed_through() -> None:
    assert judge_hard([1], Budget(), kind="infer.hard").kind == "infer.hard"


# --- soft budget ------------------------------------------------------------------


def test_soft_too_few_samples_is_not_valid_never_pass() -> None:
    verdict = judge_soft(fast_samples(100), Budget(soft_ms=100, percentile=99))
    assert verdict.status == "not-valid"
    assert not verdict.passed
    assert "p99 needs 662 samples, have 100" in verdict.reason
    assert verdict.measured == pytest.approx(2.0)


@pytest.mark.parametrize(("n", "status"), [(661, "not-valid"), (662, "pass")])
def test_soft_p99_sample_threshold(n: int, status: str) -> None:
    assert judge_soft(fast_samples(n), Budget(percentile=99)).status == status


@pytest.mark.parametrize(("n", "status"), [(63, "not-valid"), (64, "pass")])
def test_soft_p90_sample_threshold(n: int, status: str) -> None:
    assert judge_soft(fast_samples(n), Budget(percentile=90)).status == status


def test_soft_too_few_samples_is_not_valid_while_the_misses_allow_a_pass() -> None:
    # 6 of 10 over 100 ms: a 662-sample p99 run may hold 6 misses, so the unseen 652 decide.
    samples = np.append(fast_samples(4), [200 * MS] * 6)
    verdict = judge_soft(samples, Budget())
    assert verdict.status == "not-valid"
    assert "p99 needs 662 samples, have 10" in verdict.reason and "6 missed, 6 of 662 may" in verdict.reason


@pytest.mark.parametrize(("p", "needed", "allowed"), [(50, 10, 5), (90, 64, 6), (99, 662, 6), (99.9, 6643, 6)])
def test_allowed_misses_at_the_minimum_count_follows_nearest_rank(p: float, needed: int, allowed: int) -> None:
    # p99 at 662: rank ceil(0.99 * 662) = 656, so 662 - 656 = 6 samples may miss.
    assert min_samples(p) == needed
    assert allowed_misses(p, needed) == allowed
    # Cross-check against the percentile itself: `allowed` misses keep it under, one more does not.
    slow = 200 * MS
    under = np.sort(np.append(fast_samples(needed - allowed), [slow] * allowed))
    over = np.sort(np.append(fast_samples(needed - allowed - 1), [slow] * (allowed + 1)))
    assert percentile_nearest_rank(under, p) < slow <= percentile_nearest_rank(over, p)


@pytest.mark.parametrize("n", [7, 50, 661])
def test_soft_fail_is_certain_before_the_minimum_once_misses_exceed_the_allowance(n: int) -> None:
    # 7 misses among fewer than 662 samples: any 662-sample run holding them has p99 over budget.
    samples = np.append(fast_samples(n - 7), [200 * MS] * 7)
    verdict = judge_soft(samples, Budget(soft_ms=100, percentile=99))
    assert verdict.status == "fail" and verdict.valid
    assert f"7 of {n} missed" in verdict.reason and "with 662 samples" in verdict.reason
    assert "at most 6 may miss" in verdict.reason
    assert verdict.miss_rate == pytest.approx(7 / n) and verdict.n == n


def test_soft_every_sample_missed_fails_early() -> None:
    # The case: 50 runs, all over the budget -> FAIL, not "not valid".
    verdict = judge_soft(fast_samples(50, 200 * MS), Budget(soft_ms=0.01))
    assert verdict.status == "fail" and "50 of 50 missed" in verdict.reason


def test_soft_pass_is_never_certain_before_the_minimum() -> None:
    # No miss in 661 samples still leaves a not-valid verdict: the 662nd.. could all miss.
    assert judge_soft(fast_samples(661), Budget(soft_ms=100)).status == "not-valid"


def test_soft_percentile_under_passes_despite_a_tail() -> None:
    # 1000 samples, 10 of them (1%) slow: the p99 (rank 990) is still fast.
    samples = np.append(fast_samples(990), [150 * MS] * 10)
    verdict = judge_soft(samples, Budget(soft_ms=100, percentile=99))
    assert verdict.status == "pass"
    assert verdict.measured == pytest.approx(2.0)
    assert verdict.miss_rate == pytest.approx(0.01)


def test_soft_percentile_over_fails() -> None:
    # 11 slow of 1000: rank 990 lands on a slow sample.
    samples = np.append(fast_samples(989), [150 * MS] * 11)
    verdict = judge_soft(samples, Budget(soft_ms=100, percentile=99))
    assert verdict.status == "fail"
    assert verdict.measured == pytest.approx(150.0)
    assert "p99 = 150.000 ms" in verdict.reason


def test_soft_exact_boundary_is_a_miss() -> None:
    budget = Budget(soft_ms=100, percentile=90)
    assert judge_soft(fast_samples(64, 100 * MS - 1), budget).status == "pass"
    at_limit = judge_soft(fast_samples(64, 100 * MS), budget)
    assert at_limit.status == "fail" and at_limit.miss_rate == 1.0


def test_soft_no_samples_is_not_valid() -> None:
    assert judge_soft([], Budget()).status == "not-valid"


# --- model size -------------------------------------------------------------------


def test_size_under_limit_passes() -> None:
    verdict = judge_size(4_000_000, 10_000_000)
    assert verdict.status == "pass" and verdict.kind == "model_size" and verdict.unit == "MB"
    assert (verdict.measured, verdict.limit) == (4.0, 10.0)


def test_size_over_ideal_passes_and_says_so() -> None:
    verdict = judge_size(7_500_000, 10_000_000, ideal_bytes=5_000_000)
    assert verdict.status == "pass"
    assert "ideal" in verdict.reason and "5 MB" in verdict.reason


def test_size_under_ideal_does_not_mention_it() -> None:
    assert "ideal" not in judge_size(1_000_000, 10_000_000, ideal_bytes=5_000_000).reason


def test_size_at_or_over_limit_fails() -> None:
    assert judge_size(10_000_000, 10_000_000).status == "fail"
    assert judge_size(9_999_999, 10_000_000).status == "pass"
    assert judge_size(12_000_000, 10_000_000, ideal_bytes=5_000_000).status == "fail"


def test_size_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        judge_size(-1, 10)
    with pytest.raises(ValueError):
        judge_size(1, 0)
    with pytest.raises(ValueError, match="ideal"):
        judge_size(1, 10, ideal_bytes=11)


# --- overall ----------------------------------------------------------------------


def _verdict(status: str) -> Verdict:
    return Verdict("x", status, None, None, "ms", "")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass", "pass"], "pass"),
        (["pass", "not-valid"], "not-valid"),
        (["not-valid", "fail", "pass"], "fail"),
        (["fail"], "fail"),
        ([], "not-valid"),
    ],
)
def test_overall(statuses: list[str], expected: str) -> None:
    assert overall(_verdict(s) for s in statuses) == expected
