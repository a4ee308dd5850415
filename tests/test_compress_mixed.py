"""Mixed precision (ONNX): per-layer sensitivity, greedy FP32 exclusion, and what the exported graph holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgerun.compress import parse_recipe, run_recipe  # noqa: E402
from edgerun.compress import quantize as q  # noqa: E402
from edgerun.compress.mixed import onnx_mixed  # noqa: E402
from edgerun.compress.recipe import ModelConfig  # noqa: E402
from edgerun.errors import AccuracyGateError  # noqa: E402


@pytest.fixture(scope="module")
def fp32_net(tmp_path_factory) -> Path:
    """An untrained digits CNN (4 blocks: 5 Convs, 4 pointwise MatMuls, the classifier Gemm) at 8x8."""
    from edgerun.compress.export import export_onnx
    from edgerun.compress.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=0.25, depth=4)).eval()
    return export_onnx(model.fused(), (1, 8, 8), tmp_path_factory.mktemp("mixed") / "net.onnx")


CALIB = np.random.default_rng(0).standard_normal((16, 1, 1, 8, 8)).astype(np.float32)
BASE = 0.9
# Planted sensitivities (points lost while that layer is INT8): one Conv and one fused pointwise layer.
PENALTY = {"/features/features.3/conv/Conv": 3.0, "/features/features.4/fc/MatMul/MatMulAddFusion": 1.0}


def _planted_accuracy(path: Path) -> float:
    """A stand-in evaluator that reads which layers are really INT8 in the written file."""
    int8 = q.onnx_int8_layers(path)
    return BASE - sum(p for node, p in PENALTY.items() if int8[node]) / 100


def _mixed(fp32: Path, out: Path, max_drop: float):
    return onnx_mixed(fp32, out, CALIB, _planted_accuracy, lambda acc: (BASE - acc) * 100 <= max_drop + 1e-9, BASE)


@pytest.mark.parametrize(
    ("max_drop", "fp32_layers"),
    [
        (10.0, []),  # loose: everything INT8
        (1.5, ["/features/features.3/conv/Conv"]),  # the most sensitive layer first
        (0.5, ["/features/features.3/conv/Conv", "/features/features.4/fc/MatMul/MatMulAddFusion"]),
    ],
)
def test_greedy_keeps_the_most_sensitive_layers_fp32_until_the_target(fp32_net, tmp_path, max_drop, fp32_layers):
    out = tmp_path / "mixed.onnx"
    res = _mixed(fp32_net, out, max_drop)
    assert list(res.excluded) == fp32_layers and res.target_met
    by_node = {s.node: s for s in res.sensitivity}
    assert len(by_node) == 10 and set(PENALTY) <= set(by_node)
    for node, s in by_node.items():
        assert s.drop_points == pytest.approx(PENALTY.get(node, 0.0))
    assert [len(t.excluded) for t in res.trials] == list(range(len(fp32_layers) + 1))
    # The written graph: QDQ weights on every quantized layer, a float initializer on every FP32 one.
    int8 = q.onnx_int8_layers(out)
    assert int8 == {node: node not in fp32_layers for node in by_node}
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_unreachable_target_keeps_everything_fp32_and_says_so(fp32_net, tmp_path):
    out = tmp_path / "mixed.onnx"
    res = onnx_mixed(fp32_net, out, CALIB, _planted_accuracy, lambda acc: False, BASE)
    assert not res.target_met and len(res.excluded) == 10 and res.quantized == ()
    assert not any(q.onnx_int8_layers(out).values())
    d = res.to_dict()
    assert d["target_met"] is False and len(d["trials"]) == 11 and d["int8_layers"] == []


def test_exclusion_uses_the_preprocessed_names(fp32_net, tmp_path):
    """quant_pre_process renames a MatMul + Add to .../MatMulAddFusion; exclusion must match those names."""
    pre = q.onnx_preprocess(fp32_net, tmp_path / "pre.onnx")
    layers = dict(q.onnx_quantizable_nodes(pre))
    fused = "/features/features.2/fc/MatMul/MatMulAddFusion"
    assert layers[fused] == "Gemm"
    out = q.onnx_int8_static(pre, tmp_path / "q.onnx", CALIB, (fused,), preprocessed=True)
    int8 = q.onnx_int8_layers(out)
    assert int8[fused] is False and sum(int8.values()) == len(layers) - 1


def _recipe(**gate):
    return parse_recipe(
        {
            "name": "mix",
            "data": {"input_size_px": 8, "calibration_samples": 32},
            "step": [{"kind": "train", "name": "m", "model": {"width": 0.25, "depth": 2}, "train": {"epochs": 3}}],
            "gate": gate,
            "export": [{"source": "m", "precision": "mixed"}],
        }
    )


def test_recipe_mixed_export_records_the_analysis(tmp_path):
    """Through the runner: sensitivity measured with edgerun's runtime on the selection set (without a
    validation split, the train split's tail; never the test split); manifest + report."""
    out = tmp_path / "loose"
    result = run_recipe(_recipe(max_drop_points=100.0), out)
    m = json.loads((out / "m-mixed.onnx.edgerun.json").read_text())
    assert m["precision"] == "mixed"
    mp = m["provenance"]["mixed_precision"]
    assert mp["fp32_layers"] == [] and mp["target_met"] and len(mp["sensitivity"]) == 6
    assert "drop <= 100 points" in mp["target"] and "the train split's last 256 samples" in mp["target"]
    assert "test" not in mp["target"]
    assert all(q.onnx_int8_layers(out / "m-mixed.onnx").values())
    assert json.loads((out / "report.json").read_text())["mixed_precision"]["m-mixed.onnx"] == mp
    assert "top-1 if only it is INT8" in (out / "report.txt").read_text()
    assert result.details["m-mixed.onnx"] == mp


def test_recipe_mixed_export_with_an_impossible_gate_fails_loudly(tmp_path):
    out = tmp_path / "tight"
    with pytest.raises(AccuracyGateError, match="m-mixed.onnx: top-1 .* under the gate's min_accuracy"):
        run_recipe(_recipe(min_accuracy=1.0), out, keep_failed=True)
    mp = json.loads((out / "m-mixed.onnx.edgerun.json").read_text())["provenance"]["mixed_precision"]
    assert mp["target_met"] is False and len(mp["fp32_layers"]) == 6 and mp["int8_layers"] == []
    assert not any(q.onnx_int8_layers(out / "m-mixed.onnx").values())
