"""A soft verdict that the samples in hand already decide (issue 13, "Measurement honesty").

A slow device never reaches p99's 662 samples under the default cap; once more misses
were seen than a 662-sample run may hold, the FAIL is certain and the exit code says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgerun.bench.result import _soft_time_warning
from edgerun.bench.runner import BenchConfig
from edgerun.budget import Budget, judge_soft
from edgerun.cli import EXIT_FAIL, main


def test_every_sample_over_the_soft_budget_fails_before_662_samples(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    # 0.0001 ms = 100 ns: no real inference (pre + engine call + post) is that fast.
    args = ["bench", str(tiny_onnx), "--runs", "50", "--min-seconds", "0", "--warmup", "0", "--warmup-seconds", "0"]
    code = main([*args, "--no-energy", "-q", "--soft-ms", "0.0001", "--hard-ms", "1000", "--json", str(out)])
    res = json.loads(out.read_text())["results"][0]
    soft = res["verdicts"]["soft"]
    assert soft["n"] == 50 and soft["miss_rate"] == 1.0
    assert soft["status"] == "fail", soft["reason"]
    assert res["overall"] == "fail"
    assert code == EXIT_FAIL  # 1, not 3 ("nothing failed")
    assert "FAIL: 50 of 50 missed; with 662 samples at most 6 may miss" in capsys.readouterr().out


def _measurement(n: int, steady_s: float) -> SimpleNamespace:
    return SimpleNamespace(infer_ns=np.ones(n, dtype=np.int64), steady_ns=int(steady_s * 1e9))


def test_a_cap_too_short_for_a_valid_soft_verdict_says_how_long_it_would_take() -> None:
    # 50 inferences in 5 s = 10/s: 662 samples take 66.2 s, past the default 60 s cap.
    m, budget = _measurement(50, 5.0), Budget(soft_ms=1000)
    soft = judge_soft(np.full(50, 100_000_000, dtype=np.int64), budget)  # 100 ms each, all under 1 s
    assert soft.status == "not-valid"
    warning = _soft_time_warning(m, BenchConfig(min_runs=50, max_seconds=60), budget, soft)
    assert warning is not None
    assert "662 samples" in warning and "about 66 s" in warning and "--max-seconds 73" in warning
    assert "--runs 662" in warning


def test_no_time_warning_when_the_cap_suffices_or_the_verdict_is_decided() -> None:
    budget = Budget(soft_ms=1000)
    soft = judge_soft(np.full(50, 100_000_000, dtype=np.int64), budget)
    # 100/s: 662 samples in 6.6 s, well inside 60 s; only --runs kept the count low.
    assert _soft_time_warning(_measurement(50, 0.5), BenchConfig(min_runs=50), budget, soft) is None
    decided = judge_soft(np.full(50, 2_000_000_000, dtype=np.int64), budget)  # all missed: a certain fail
    assert decided.status == "fail"
    assert _soft_time_warning(_measurement(50, 5.0), BenchConfig(min_runs=50), budget, decided) is None
