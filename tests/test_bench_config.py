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


def test_bench_options_are_checked_by_the_config_rule_naming_the_flag() -> None:
    from edgerun.errors import UsageError
    from edgerun.targets.options import BenchOptions

    for values, flag in [({"runs": 0}, "runs"), ({"warmup": -1}, "warmup"), ({"sustained": 0.0}, "sustained"),
                         ({"max_seconds": float("inf")}, "max_seconds"), ({"energy_windows": 0}, "energy_windows"),
                         ({"threads": 0}, "threads")]:  # fmt: skip
        with pytest.raises(BenchConfigError, match=rf"bench config: {flag} must be") as info:
            BenchOptions.from_mapping(values, "plan.toml: [bench]")
        assert info.value.field == flag and isinstance(info.value, UsageError)
    remote = BenchOptions(threads=4096, sustained=1.0, max_seconds=10.0)  # more threads than here: the device's
    assert remote.config(here=False).threads is None and remote.config(here=False).min_seconds == 60.0
    assert remote.job_timeout_s() == 2 * (60.0 * 1.5 + 10) + 120 + 60  # the stretched run, as the device runs it
    assert BenchOptions(timeout=30.0).job_timeout_s() == 90.0


def test_the_cli_and_bench_options_build_the_same_config() -> None:
    from edgerun.cli import build_parser
    from edgerun.cli.bench import _bench_config
    from edgerun.targets.options import BenchOptions

    argv = ["bench", "--runs", "50", "--sustained", "0.5", "--no-energy", "--graph-opt", "basic", "--warmup", "3"]
    args = build_parser().parse_args(argv)
    config = _bench_config(args)
    assert config == BenchOptions(runs=50, sustained=0.5, no_energy=True, graph_opt="basic", warmup=3).config()
    assert (config.min_runs, config.min_seconds, config.energy, config.graph_optimization) == (50, 30.0, False, "basic")
