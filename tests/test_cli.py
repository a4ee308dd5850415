"""The command line on the bundled demo: the README's main job, info, run, profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from edgerun.cli import main
from edgerun.demo import DEMO_DIR, DEMO_NAMES


def test_bench_with_no_argument_runs_every_demo_artifact(tmp_path: Path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "demo.json"
    fast = ["--runs", "700", "--min-seconds", "0", "--warmup-seconds", "0", "--energy-window-seconds", "0.2"]
    code = main(["bench", *fast, "-q", "--json", str(out)])  # short energy windows: 7 artifacts, ~1 s saved each
    doc = json.loads(out.read_text())
    schema = json.loads(resources.files("edgerun.bench").joinpath("result.schema.json").read_text())
    jsonschema.validate(doc, schema)
    results = doc["results"]
    assert [Path(r["artifact"]["path"]).name for r in results] == list(DEMO_NAMES)
    assert all(r["status"] == "ok" for r in results)
    assert all(r["input_source"].startswith("samples:digits-test.npz") for r in results)
    assert {r["artifact"]["precision"] for r in results} == {"fp32", "int8", "int4"}
    table = capsys.readouterr().out
    # The energy row's source depends on this machine: bench takes the first available measured
    # probe (RAPL where /sys/class/powercap is readable, e.g. CI as root), else the labelled estimate.
    # doctor lists the probes in that same order with the same checks, so it says which one to expect.
    assert main(["doctor", "--json"]) == 0
    probes = json.loads(capsys.readouterr().out)["probes"]
    measured = [p["name"] for p in probes if p["available"] and p["name"] != "estimate"]
    expected_probe = measured[0] if measured else "estimate"
    for r in results:
        assert r["memory"]["peak_rss_steady_bytes"] > r["memory"]["model_file_bytes"]
        assert r["energy"]["probe"] == expected_probe
        estimate_warnings = [w for w in r["warnings"] if w.startswith("energy is an estimate")]
        if expected_probe == "estimate":
            assert r["energy"]["source"] == "estimated" and estimate_warnings
        else:
            assert r["energy"]["source"] == "measured" and not estimate_warnings
        assert r["thermal"] is not None
    for label in ("infer p50 / p99 (ms)", "total p99 (ms)", "hard < ", "soft p99 < ", "overall"):
        assert label in table
    assert code in (0, 1, 3)
    assert code == (
        1
        if any(r["overall"] == "fail" for r in results)
        else 3
        if any(r["overall"] == "not-valid" for r in results)
        else 0
    )


def test_info_reports_precision_accuracy_and_ops(capsys):
    for name in DEMO_NAMES:
        assert main(["info", str(DEMO_DIR / name), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["sha256_verified"] is True
        assert data["precision"] == data["precision_detected"]
        assert data["provenance"]["accuracy"]["n"] == 450
        assert data["parameter_count"] > 30_000 and data["op_histogram"]
    assert main(["info", str(DEMO_DIR / "digits-int8.onnx")]) == 0
    text = capsys.readouterr().out
    assert "precision    int8" in text and "accuracy" in text and "QuantizeLinear" in text


def test_run_one_inference(capsys):
    assert main(["run", str(DEMO_DIR / "digits-fp32.onnx"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["route"] == "local" and len(data["top"]) == 3 and data["input"].startswith("samples:")


def test_profiles_list_and_detect(capsys):
    assert main(["profiles", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert {"raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano", "wearable-band"} <= names
    assert main(["profiles", "--detect"]) == 0
    assert ":" in capsys.readouterr().out


def test_errors_exit_nonzero_with_a_message(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "edgerun.cli", "info", str(tmp_path / "nope.onnx")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("edgerun: error: ") and "no such file" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgerun.cli", "bench", "--runs", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr


def test_doctor_lists_engines_probes_and_reasons(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    engines = {e["engine"]: e for e in report["engines"]}
    assert engines["onnx"]["available"] and "CPUExecutionProvider" in engines["onnx"]["providers"]
    assert engines["litert"]["available"]
    probes = {p["name"]: p for p in report["probes"]}
    assert probes["estimate"]["available"] and "estimate" in probes["estimate"]["reason"]
    for p in probes.values():  # every probe that is not available says why
        assert p["available"] or len(p["reason"]) > 10
    assert report["profile"]["name"] and report["profile"]["reason"]
    assert main(["doctor"]) == 0
    assert "power probes" in capsys.readouterr().out
