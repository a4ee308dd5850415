"""Recipes end to end on 8x8 digits: exports, quantization, the gate through edgerun's runtime, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
onnx = pytest.importorskip("onnx")

import edgerun  # noqa: E402
from edgerun.artifact import inspect_model  # noqa: E402
from edgerun.compress import parse_recipe, run_recipe  # noqa: E402
from edgerun.compress.quantize import gemm_to_matmul  # noqa: E402
from edgerun.errors import AccuracyGateError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {
    "name": "tiny",
    "data": {"input_size_px": 8, "calibration_samples": 64},
    "step": [
        {"kind": "train", "name": "teacher", "model": {"width": 0.5, "depth": 4}, "train": {"epochs": 20}},
        {
            "kind": "prune",
            "name": "pruned",
            "source": "teacher",
            "method": "channels",
            "amount": 0.25,
            "finetune": {"epochs": 10, "lr": 3e-3},
        },
    ],
    "gate": {"max_drop_points": 2.0, "max_drop_vs_teacher_points": 100.0},  # the pruned tiny model loses points
    "export": [
        {"source": "teacher"},
        {"source": "pruned"},
        {"source": "pruned", "precision": "int8"},
        {"source": "pruned", "precision": "int8", "mode": "dynamic"},
        {"source": "pruned", "precision": "int4", "max_drop_points": 100.0},
        {"source": "pruned", "format": "tflite", "precision": "int8"},
    ],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    lines: list[str] = []
    result = run_recipe(parse_recipe(TINY), out, progress=lines.append)
    return result, out, lines


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_static_int8_onnx_is_qdq_and_within_the_gate(tiny_run):
    result, out, _ = tiny_run
    ops = _ops(out / "pruned-int8.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    p = next(p for p in result.produced if p.spec.file_name == "pruned-int8.onnx")
    fp32 = next(p for p in result.produced if p.spec.file_name == "pruned-fp32.onnx")
    assert fp32.measured.accuracy > 0.8  # a real model, or the gate below means nothing
    assert p.verdict.passed and abs(p.measured.accuracy - fp32.measured.accuracy) <= 0.02


def test_dynamic_int8_and_int4(tiny_run):
    _, out, _ = tiny_run
    assert "DynamicQuantizeLinear" in _ops(out / "pruned-int8-dynamic.onnx") or "MatMulInteger" in _ops(
        out / "pruned-int8-dynamic.onnx"
    )
    int4 = _ops(out / "pruned-int4.onnx")
    assert "MatMulNBits" in int4 and "Gemm" not in int4  # the classifier's Gemm was rewritten and quantized
    assert inspect_model(out / "pruned-int4.onnx").parameter_dtypes.get("int4", 0) > 0


def test_tflite_int8_has_int8_io(tiny_run):
    _, out, _ = tiny_run
    art = edgerun.load(out / "pruned-int8.tflite").artifact
    assert art.inputs[0].dtype == "int8" and art.outputs[0].dtype == "int8"
    assert art.inputs[0].quant is not None


def test_structured_pruning_shrinks_the_exported_model(tiny_run):
    _, out, _ = tiny_run
    big, small = out / "teacher-fp32.onnx", out / "pruned-fp32.onnx"
    assert inspect_model(small).parameter_count < 0.8 * inspect_model(big).parameter_count
    assert small.stat().st_size < big.stat().st_size


def test_manifest_carries_provenance_measured_through_the_runtime(tiny_run):
    result, out, _ = tiny_run
    m = json.loads((out / "pruned-int8.onnx.edgerun.json").read_text())
    prov = m["provenance"]
    assert prov["accuracy"]["measured_with"].startswith("edgerun runtime")
    assert prov["accuracy"]["n"] == 450
    assert "teacher -> pruned -> onnx int8 static" in prov["recipe"]
    assert prov["gate"]["passed"] is True and "parent_sha256" in prov
    assert {"size_bytes", "parameters", "latency_p50_ms", "weight_sparsity"} <= set(prov["metrics"])
    # The recorded accuracy is what edgerun's runtime gives on the bundled samples.
    rt = edgerun.load(out / "pruned-int8.onnx")
    samples = np.load(out / m["samples"])
    acc = np.mean([rt.run(x).top[0].index == y for x, y in zip(samples["x"], samples["y"])])
    assert acc == pytest.approx(prov["accuracy"]["value"], abs=1e-4)


def test_report_table_json_and_plot(tiny_run):
    result, out, lines = tiny_run
    assert "pruned-int4.onnx" in result.table and "pareto" in result.table
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {r["name"] for r in rows} >= {"teacher", "pruned", "pruned-int8.tflite"}
    assert any(r["pareto"] for r in rows)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert any("epoch" in line for line in lines)  # progress was reported
    assert not list(out.glob(".staging-*"))


def test_gate_failure_is_loud_and_writes_nothing(tmp_path):
    recipe = parse_recipe(
        {
            "name": "fail",
            "data": {"input_size_px": 8},
            "step": [{"kind": "train", "name": "m", "model": {"width": 0.25, "depth": 2}, "train": {"epochs": 1}}],
            "gate": {"min_accuracy": 1.0},
            "export": [{"source": "m"}],
        }
    )
    with pytest.raises(AccuracyGateError, match=r"m-fp32.onnx: top-1 .* under the gate's min_accuracy 100.00%"):
        run_recipe(recipe, tmp_path / "a")
    assert not list((tmp_path / "a").glob("*.onnx"))
    kept = run_recipe(recipe, tmp_path / "b", keep_failed=True, check=False)
    assert kept.failed and (tmp_path / "b" / "m-fp32.onnx").exists()
    gate = json.loads((tmp_path / "b" / "m-fp32.onnx.edgerun.json").read_text())["provenance"]["gate"]
    assert gate["passed"] is False


def test_gemm_to_matmul_keeps_the_numbers(tmp_path):
    import onnxruntime as ort

    from edgerun.compress.export import export_onnx

    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    path = export_onnx(Lin(), (1, 8, 8), tmp_path / "lin.onnx")
    assert "Gemm" in _ops(path)
    rewritten = gemm_to_matmul(onnx.load(str(path)))
    assert {n.op_type for n in rewritten.graph.node} >= {"MatMul", "Add"} and "Gemm" not in {
        n.op_type for n in rewritten.graph.node
    }
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    a = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    b = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_demo_recipe_rebuilds_the_bundled_demo(tmp_path):
    """tools/build_demo.py (recipes/digits-demo.toml, 3-5 min on 2 cores) end to end, checking what holds on
    any machine: training is seeded, but float reductions differ across CPUs and kernels, so exact accuracies,
    bytes and a post-training INT4 variant's gate are not facts to assert here."""
    from tool_modules import tool as load_tool

    tool = load_tool("build_demo")
    assert tool.main(["--work", str(tmp_path / "work"), "--out", str(tmp_path / "demo")]) == 0  # demo gates passed
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["pruned-fp32.onnx"]["params"] < rows["student"]["params"] < rows["teacher"]["params"]
    assert (tmp_path / "work" / "pareto.png").stat().st_size > 10_000
    for path in (tmp_path / "work").glob("*.edgerun.json"):  # every kept artifact passed its own gate
        assert edgerun.load(path).artifact.manifest.provenance["gate"]["passed"], path.name
    # The bundled files are what this recipe makes: each rebuilt demo accuracy is within 2 points (9 of the
    # 450 test images) of the shipped manifest's.
    for name in tool.LAYOUT.values():
        rebuilt = edgerun.load(tmp_path / "demo" / name).artifact.manifest.provenance
        shipped = edgerun.load(REPO / "edgerun" / "demo" / name).artifact.manifest.provenance
        assert rebuilt["recipe"] == shipped["recipe"] and rebuilt["gate"]["passed"]
        assert abs(rebuilt["accuracy"]["value"] - shipped["accuracy"]["value"]) <= 0.02, name
