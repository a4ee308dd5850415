"""Native benchmark binaries: their recorded output (sources in tests/fixtures/targets/README.md) parsed and judged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgerun.budget import Budget
from edgerun.profiles import load_profile
from edgerun.targets.native_parse import NativeRun, parse_benchmark_model, parse_perf_test
from edgerun.targets.native_result import native_verdicts

FIX = Path(__file__).resolve().parent / "fixtures" / "targets"
TFLITE = (FIX / "outputs" / "benchmark_model.txt").read_text()
ORT = (FIX / "outputs" / "onnxruntime_perf_test.txt").read_text()


@pytest.mark.parametrize("tool", ["benchmark_model", "onnxruntime_perf_test"])
def test_the_stand_ins_print_exactly_the_recorded_output(tool: str, tmp_path: Path) -> None:
    script = tmp_path / tool
    script.write_bytes((FIX / "bin" / tool).read_bytes())
    script.chmod(0o755)
    done = subprocess.run([str(script), "--x=1", "y"], capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout == (FIX / "outputs" / f"{tool}.txt").read_text()
    assert (tmp_path / f"{tool}.args").read_text() == "--x=1\ny\n"


def test_benchmark_model_output_in_ns_and_bytes() -> None:
    run = parse_benchmark_model(TFLITE)
    assert (run.count, run.mean_ns, run.min_ns, run.max_ns, run.std_ns) == (50, 266473000, 265837000, 268116000, 419000)
    assert (run.session_create_ns, run.first_inference_ns, run.warmup_mean_ns) == (20283000, 339304000, 302814000)
    assert run.percentiles_ns == {} and run.peak_memory_bytes == round(13.1797 * 1024 * 1024)
    assert any("population standard deviation" in n for n in run.notes)


def test_benchmark_model_picks_the_steady_state_line_of_two() -> None:
    # benchmark_model prints one count= line per phase (benchmark_model.cc): warm-up first.
    # Synthetic warm-up line in that format, before the verbatim capture.
    warmup = "count=3 first=339304 curr=290000 min=280000 max=339304 avg=302814 std=25000\n"
    run = parse_benchmark_model(warmup + TFLITE)
    assert run.count == 50 and run.warmup_count == 3 and run.mean_ns == 266473000


def test_perf_test_output_with_its_percentiles() -> None:
    run = parse_perf_test(ORT, requested_runs=500)
    assert run.count == 500 and run.mean_ns == pytest.approx(1857390)
    assert run.percentiles_ns == {"p50": 1856740, "p99": 1903120, "p99.9": 1903120}
    assert (run.session_create_ns, run.first_inference_ns, run.peak_memory_bytes) == (10201600, 2000000, 36696064)
    assert any("-r 500" in n for n in run.notes) and any("96%" in n for n in run.notes)


@pytest.mark.parametrize("parse", [parse_benchmark_model, parse_perf_test])
def test_unexpected_output_is_an_error_not_a_zero(parse) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="has no"):
        parse("ERROR: Could not open 'model.tflite'.\nAborted\n")


def _verdicts(run: NativeRun, **budget: float) -> dict[str, str]:
    v = native_verdicts(run, Budget(**budget), load_profile("android-arm64-phone"), 400_000)
    return {k: x.status for k, x in v.items()}


def test_verdicts_use_only_what_the_binary_reported() -> None:
    ort = parse_perf_test(ORT, requested_runs=700)
    assert _verdicts(ort) == {"hard": "pass", "soft": "pass", "model_size": "pass"}
    assert _verdicts(ort, hard_ms=1.9) == {"hard": "fail", "soft": "pass", "model_size": "pass"}
    # 1000 runs or more: P999 is no longer the maximum, so the hard budget cannot be judged
    assert _verdicts(parse_perf_test(ORT, requested_runs=5000))["hard"] == "not-valid"
    assert _verdicts(parse_perf_test(ORT, requested_runs=300))["soft"] == "not-valid"  # p99 needs 662
    tfl = parse_benchmark_model(TFLITE)
    assert _verdicts(tfl, soft_ms=1000, hard_ms=500) == {"hard": "pass", "soft": "not-valid", "model_size": "pass"}
