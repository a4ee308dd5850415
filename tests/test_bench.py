"""The benchmark: stop rule, verdicts, JSON result against its schema, CLI exit codes."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from edgerun.bench.result import build_result, result_file
from edgerun.bench.runner import BenchConfig, measure
from edgerun.budget import Budget
from edgerun.cli import EXIT_FAIL, EXIT_NOT_VALID, EXIT_PASS, main
from edgerun.errors import BenchError
from edgerun.profiles import load_profile

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads(resources.files("edgerun.bench").joinpath("result.schema.json").read_text())
FAST = ["--runs", "700", "--min-seconds", "0", "--warmup", "5", "--warmup-seconds", "0", "--no-energy", "-q"]


def test_stop_rule_needs_both_count_and_time(tiny_onnx: Path):
    m = measure(tiny_onnx, BenchConfig(min_runs=50, min_seconds=0.2, warmup_runs=3, warmup_seconds=0, energy=False))
    assert m.infer_ns.size > 50  # a ~10 us model runs far more than 50 times in 0.2 s
    assert m.steady_ns >= 0.2e9
    m = measure(tiny_onnx, BenchConfig(min_runs=500, min_seconds=0, warmup_runs=0, warmup_seconds=0, energy=False))
    assert m.infer_ns.size == 500 and m.warmup_runs == 0


def test_max_seconds_caps_and_is_recorded(tiny_onnx: Path):
    m = measure(tiny_onnx, BenchConfig(min_runs=10**9, min_seconds=0, max_seconds=0.1, warmup_runs=0, warmup_seconds=0))
    assert m.hit_max_seconds and 0 < m.infer_ns.size < 10**9


def test_result_validates_against_schema(tiny_onnx: Path):
    cfg = BenchConfig(min_runs=700, min_seconds=0, warmup_runs=5, warmup_seconds=0)
    prof = load_profile("raspberry-pi-5")
    res = build_result(measure(tiny_onnx, cfg, prof), cfg, prof.budget, prof, "test")
    doc = result_file([res])
    jsonschema.validate(doc, SCHEMA)
    assert res["stats"]["total"]["n"] == 700
    assert res["stats"]["total"]["percentiles"]["p99"]["valid"] is True
    assert res["stats"]["total"]["percentiles"]["p99.9"]["valid"] is False  # needs 6643
    assert len(res["samples_ns"]["infer"]) == 700


def test_too_few_samples_is_not_valid_never_pass(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    code = main(
        [
            "bench",
            str(tiny_onnx),
            "--runs",
            "100",
            "--min-seconds",
            "0",
            "--warmup",
            "0",
            "--warmup-seconds",
            "0",
            "-q",
            "--json",
            str(out),
            "--hard-ms",
            "1000",
        ]
    )
    res = json.loads(out.read_text())["results"][0]
    assert res["verdicts"]["soft"]["status"] == "not-valid"
    assert "needs 662 samples, have 100" in res["verdicts"]["soft"]["reason"]
    assert code == EXIT_NOT_VALID


def test_hard_budget_miss_fails_the_run(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    # 1 ns hard budget: every real inference misses it
    code = main(["bench", str(tiny_onnx), *FAST, "--hard-ms", "0.000001", "--json", str(out)])
    res = json.loads(out.read_text())["results"][0]
    assert res["verdicts"]["hard"]["status"] == "fail" and res["overall"] == "fail"
    assert code == EXIT_FAIL


def test_passing_run_exits_zero(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    code = main(["bench", str(tiny_onnx), *FAST, "--hard-ms", "1000", "--json", str(out)])
    res = json.loads(out.read_text())["results"][0]
    assert res["overall"] == "pass", res["verdicts"]
    assert code == EXIT_PASS


def test_a_broken_artifact_does_not_stop_the_others(tiny_onnx: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08garbage")
    out = tmp_path / "r.json"
    code = main(["bench", str(bad), str(tiny_onnx), *FAST, "--hard-ms", "1000", "--json", str(out)])
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert [r["status"] for r in doc["results"]] == ["error", "ok"]
    assert doc["results"][0]["error"]["type"] == "ArtifactError"
    assert code == EXIT_FAIL
    assert "ERROR" in capsys.readouterr().out


def test_budget_flags_override_profile(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    main(
        [
            "bench",
            str(tiny_onnx),
            *FAST,
            "--profile",
            "wearable-band",
            "--soft-ms",
            "50",
            "--percentile",
            "90",
            "--json",
            str(out),
        ]
    )
    res = json.loads(out.read_text())["results"][0]
    assert res["budget"]["soft_ms"] == 50 and res["budget"]["percentile"] == 90
    assert res["profile"]["name"] == "wearable-band"
    assert Budget(**res["budget"]).hard_ms == load_profile("wearable-band").budget.hard_ms


def test_version_1_results_are_still_readable():
    from edgerun.bench.result import SCHEMA_VERSION, read_result_file

    path = Path(__file__).parent / "fixtures" / "results" / "bench-v1.json"  # written by edgerun 0.1, schema 1
    doc = read_result_file(str(path))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["upgraded_from"] == 1
    res = doc["results"][0]
    assert res["stats"]["total"]["percentiles"]["p99"]["ci95_ns"] is None
    assert res["stability"]["total"]["cv"] > 0
    jsonschema.validate({**doc, "results": [{**res, "samples_ns": res["samples_ns"]}]}, SCHEMA)


def test_unknown_result_versions_are_refused(tmp_path: Path):
    from edgerun.bench.result import read_result_file

    path = tmp_path / "future.json"
    path.write_text(json.dumps({"schema": "edgerun.bench", "schema_version": 99, "results": []}))
    with pytest.raises(BenchError, match="schema_version 99 is not supported"):
        read_result_file(str(path))


def test_sustained_mode_reports_drift_between_first_and_last_window(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    main(
        [
            "bench",
            str(tiny_onnx),
            "--sustained",
            "0.02",
            "--runs",
            "10",
            "--warmup-seconds",
            "0",
            "--hard-ms",
            "1000",
            "-q",
            "--json",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    res = doc["results"][0]
    sus = res["sustained"]
    assert res["steady"]["duration_ns"] >= 1.2e9
    assert sus["window_ns"] == sus["duration_ns"] // 4  # shorter than 4 minutes: quarters
    assert sus["first"]["n"] > 100 and sus["last"]["n"] > 100
    assert isinstance(sus["p50_drift_pct"], float)


def test_sustained_drift_arithmetic():
    import numpy as np

    from edgerun.bench.result import sustained_drift

    start = np.arange(0, 400) * 1_000_000  # one inference per ms for 0.4 s
    total = np.where(start < 200_000_000, 1000, 1500).astype(np.int64)  # 50% slower in the second half
    sus = sustained_drift(start, total, 400_000_000)
    assert sus["window_ns"] == 100_000_000
    assert sus["p50_drift_pct"] == pytest.approx(50.0) and sus["p99_drift_pct"] == pytest.approx(50.0)


def test_memory_reports_the_model_file_size_when_given_a_manifest():
    from edgerun.artifact import manifest_path_for
    from edgerun.demo import DEMO_DIR

    model = DEMO_DIR / "digits-int8.tflite"
    cfg = BenchConfig(min_runs=10, min_seconds=0, warmup_runs=0, warmup_seconds=0, energy=False, thermal=False)
    m = measure(manifest_path_for(model), cfg)
    assert m.memory.model_file_bytes == model.stat().st_size
