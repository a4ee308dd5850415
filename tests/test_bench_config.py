"""BenchConfig holds the benchmark's policy, so the CLI, measure() and a lab plan run the same thing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgerun.bench.result import sustained_drift
from edgerun.bench.runner import MAX_SECONDS, BenchConfig, BenchConfigError, measure


def test_sustained_stretches_the_steady_state_and_replace_keeps_it() -> None:
    config = BenchConfig(min_seconds=1.0, max_seconds=60.0, sustained_minutes=2.0)
    assert config.min_seconds == 120.0 and config.max_seconds == 120.0 * 1.5 + 10
    assert dataclasses.replace(config, seed=3).min_seconds == 120.0  # idempotent through replace
    longer = BenchConfig(min_seconds=500.0, max_seconds=1000.0, sustained_minutes=2.0)
    assert (longer.min_seconds, longer.max_seconds) == (500.0, 1000.0)  # already long enough: unchanged
    week = BenchConfig(sustained_minutes=MAX_SECONDS / 60)
    assert week.max_seconds == MAX_SECONDS  # the cap holds
    assert BenchConfig().min_seconds == 1.0  # no sustained run: as given
    with pytest.raises(BenchConfigError, match="sustained_minutes must be > 0"):
        BenchConfig(sustained_minutes=0.0)


def test_measure_through_the_python_api_runs_the_sustained_length(tiny_onnx: Path) -> None:
    # Issue 13: measure() used to ignore sustained mode (3 s asked, 0.2 s run, drift over 50 ms quarters).
    config = BenchConfig(
        min_runs=5, max_seconds=0.05, warmup_runs=0, warmup_seconds=0.0, sustained_minutes=0.01,
        memory=False, thermal=False, energy=False,
    )  # fmt: skip
    m = measure(tiny_onnx, config)
    assert m.steady_ns >= 0.6e9 and not m.hit_max_seconds  # the stop rule's own bound: 0.01 min = 0.6 s
    drift = sustained_drift(m.start_ns, m.pre_ns + m.infer_ns + m.post_ns, m.steady_ns)
    assert drift["window_ns"] == m.steady_ns // 4
