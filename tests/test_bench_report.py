"""The side-by-side table's footnotes: the sample rule of the percentiles actually starred, and an
error result's whole message (the fix is often at its end)."""

from __future__ import annotations

from pathlib import Path

from edgerun.bench.report import side_by_side
from edgerun.bench.result import bench_one
from edgerun.bench.runner import BenchConfig
from edgerun.measure.stats import min_samples
from edgerun.profiles import load_profile

PROFILE = load_profile("raspberry-pi-5")


def _bench(path: Path, runs: int) -> dict:
    cfg = BenchConfig(min_runs=runs, min_seconds=0, warmup_runs=0, warmup_seconds=0, energy=False)
    return bench_one(str(path), cfg, PROFILE, PROFILE.budget, "test")


def test_footnote_quotes_the_rule_of_each_starred_percentile(tiny_onnx: Path) -> None:
    few = side_by_side([_bench(tiny_onnx, 700)])  # enough for p99 (662), not for p99.9 (6643)
    footnote = few.splitlines()[-1]
    assert f"{min_samples(99.9)} samples for p99.9" in footnote
    assert "p99 " not in footnote.replace("p99.9", "") and "p90" not in footnote
    fewer = side_by_side([_bench(tiny_onnx, 100)])  # too few for p95, p99, p99.9
    assert "130 samples for p95, 662 samples for p99, 6643 samples for p99.9" in fewer.splitlines()[-1]


def test_an_error_result_keeps_its_whole_message(tmp_path: Path, tiny_onnx: Path) -> None:
    bad = tmp_path / ("a-model-file-with-a-long-name-so-that-the-message-runs-past-eighty-characters" + ".onnx")
    bad.write_bytes(b"\x00" * 64)
    error = _bench(bad, 10)
    assert error["status"] == "error" and len(error["error"]["message"]) > 80
    table = side_by_side([_bench(tiny_onnx, 700), error])
    assert table.splitlines()[-1].endswith(error["error"]["message"])
