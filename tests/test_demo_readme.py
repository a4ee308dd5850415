"""The README's compression table and the bundled digits demo come from one recorded run.

docs/img/digits-demo-report.json is the report.json of the `python tools/build_demo.py` run that built
edgerun/demo's digits files and docs/img/digits-demo-pareto.png. These checks fail when the README's
table is edited by hand, or when a shipped file or manifest no longer matches that run (a rebuild that
refreshed one without the other). Milliseconds; no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tool_modules import tool

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "img" / "digits-demo-report.json"
DEMO = REPO / "edgerun" / "demo"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text())


@pytest.fixture(scope="module")
def build_demo():
    return tool("build_demo")


def test_the_readme_table_is_the_recorded_runs(report, build_demo):
    table = build_demo.readme_table(report)
    assert table.count("\n") >= 11  # header, rule and the ten ONNX / TFLite rows at least
    assert table in (REPO / "README.md").read_text(encoding="utf-8")


def test_shipped_demo_files_are_the_recorded_runs(report, build_demo):
    """Each bundled file has the size, accuracy and both gate drops its report row has."""
    rows = {r["name"]: r for r in report["rows"]}
    for src, dst in build_demo.LAYOUT.items():
        row = rows[src]
        manifest = json.loads((DEMO / f"{dst}.edgerun.json").read_text())
        prov = manifest["provenance"]
        assert (DEMO / dst).stat().st_size == row["size_bytes"], dst
        assert prov["metrics"]["size_bytes"] == row["size_bytes"], dst
        assert prov["accuracy"]["value"] == round(row["accuracy"], 4) and prov["accuracy"]["n"] == 450, dst
        gate = prov["gate"]
        assert gate["passed"] and row["gate"] == "pass", dst
        assert gate["drop_points"] == round(row["drop_points"], 2), dst
        # the teacher-relative gate the recipe writes: the shipped manifests carry it too
        assert gate["teacher"] == "teacher", dst
        assert gate["drop_vs_teacher_points"] == round(row["drop_vs_teacher_points"], 2), dst
        assert gate["max_drop_vs_teacher_points"] > 0 and 0 < gate["teacher_accuracy"] <= 1, dst
        assert prov["training"]["threads"] == 2, dst  # the recipe's `threads`


def test_pareto_plot_is_committed_beside_its_report():
    png = REPO / "docs" / "img" / "digits-demo-pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_readme_table_marks_a_failed_row_and_skips_a_missing_one(build_demo):
    """The renderer itself: a FAIL row is labelled, a file the run did not make is left out."""
    row = {
        "name": "pruned-int4.tflite",
        "kind": "tflite",
        "precision": "int4",
        "params": 100,
        "size_bytes": 53_760,
        "accuracy": 0.9,
        "drop_points": 8.0,
        "drop_vs_teacher_points": 9.5,
        "latency_p50_ms": 0.384,
        "gate": "FAIL",
    }
    table = build_demo.readme_table({"rows": [row]})
    assert table.splitlines()[2] == (
        "| pruned INT4 TFLite (weight-only) (FAIL: missed its gate) |  | 52 | 90.00% | 8.00 | 9.50 | 0.38 |"
    )
    assert len(table.splitlines()) == 3


def test_bundled_pte_manifests_carry_the_teacher_gate_of_the_onnx_they_came_from():
    """digits-*.pte (tools/build_demo_pte.py, from the bundled FP32 ONNX): gated against the same teacher."""
    onnx_gate = json.loads((DEMO / "digits-fp32.onnx.edgerun.json").read_text())["provenance"]["gate"]
    for name in ("digits-fp32.pte", "digits-int8.pte"):
        prov = json.loads((DEMO / f"{name}.edgerun.json").read_text())["provenance"]
        gate = prov["gate"]
        assert gate["passed"] and gate["teacher"] == onnx_gate["teacher"], name
        assert gate["teacher_accuracy"] == onnx_gate["teacher_accuracy"], name
        expected = round((gate["teacher_accuracy"] - prov["accuracy"]["value"]) * 100, 2)
        assert abs(gate["drop_vs_teacher_points"] - expected) <= 0.01, name  # the recorded figures, rounded
