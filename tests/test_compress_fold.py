"""Export formats of a recipe: pre-processing folded into the model, Core ML packages, .pte tensor names.

``fold_preprocessing``: the folded network on the kept ops' output must compute what the original
network computes on the full pre-processing (edgerun's own op implementations, edgerun.pipeline_ops,
are the reference); through a recipe, the folded files' manifests lose the folded ops and the runner
checks each against the same export unfolded (and refuses one that moved top-1 past the gate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

import edgerun  # noqa: E402
from edgerun.cli import main  # noqa: E402
from edgerun.compress import parse_recipe, run_recipe  # noqa: E402
from edgerun.compress.data import digits_ops  # noqa: E402
from edgerun.compress.fold import Affine, fold_into, split  # noqa: E402
from edgerun.errors import AccuracyGateError, CompressError, RecipeError  # noqa: E402
from edgerun.pipeline import compile_pre  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = Path(__file__).resolve().parent.parent / "recipes" / "examples"
FLOAT_IN = edgerun.artifact.TensorSpec("input", (), "float32")


def _reference(model: nn.Module, ops: list[dict], raw: np.ndarray) -> np.ndarray:
    """The original network on the full pre-processing, op by op as edgerun.pipeline_ops applies it."""
    fns = compile_pre(ops, FLOAT_IN, "test")
    x = np.stack([_apply(fns, s) for s in raw])
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _apply(fns, sample):
    for f in fns:
        sample = f(sample)
    return sample


def _folded(model: nn.Module, ops: list[dict], raw: np.ndarray) -> tuple[np.ndarray, str, nn.Module]:
    folding = split(ops, "test", raw[0])
    kept = np.stack([_apply(compile_pre(list(folding.kept), FLOAT_IN, "test"), s) for s in raw])
    new, how = fold_into(model, folding, kept.shape[1:])
    with torch.no_grad():
        return new(torch.from_numpy(kept)).numpy(), how, new


def test_split_keeps_what_cannot_fold_and_composes_the_affine_ops():
    ops = [dict(op) for op in digits_ops(16, 0.3, 0.4)]  # cast, resize, scale 1/16, normalize, expand_dims 0
    f = split(ops, "test", np.zeros((8, 8), np.float32))
    assert [op["op"] for op in f.kept] == ["cast", "resize", "expand_dims"]
    assert [op["op"] for op in f.folded] == ["scale", "normalize"]
    np.testing.assert_allclose(f.a.reshape(-1), [1 / 16 / np.float32(0.4)], rtol=1e-6)
    np.testing.assert_allclose(f.b.reshape(-1), [-np.float32(0.3) / np.float32(0.4)], rtol=1e-6)
    with pytest.raises(CompressError, match=r"nothing to fold; the pre-processing ends in 'resize'"):
        split(ops[:2], "[[export]]", np.zeros((8, 8), np.float32))


def test_per_feature_normalize_folds_into_the_first_linear_layer():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    mean, std = rng.normal(size=6) * 50, rng.uniform(0.1, 30, size=6)
    ops = [{"op": "normalize", "mean": mean.tolist(), "std": std.tolist(), "axis": -1}]
    raw = (rng.normal(size=(64, 6)) * std + mean).astype(np.float32)
    got, how, new = _folded(model, ops, raw)
    assert "into the weights and bias of 1 (Linear)" in how and not isinstance(new, Affine)
    np.testing.assert_allclose(got, _reference(model, ops, raw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("padding", "mean", "into_weights"),
    [(0, [0.5, -2.0], True), (1, [0.0, 0.0], True), (1, [0.5, -2.0], False)],  # padded + shift: explicit ops
)
def test_per_channel_normalize_folds_into_a_conv_only_where_exact(padding, mean, into_weights):
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=padding), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 2, 6, 6))  # materialize the lazy layer
    model.eval()
    ops = [{"op": "scale", "factor": 0.5}, {"op": "normalize", "mean": mean, "std": [0.25, 4.0], "axis": 0}]
    raw = rng.uniform(0, 10, size=(16, 2, 6, 6)).astype(np.float32)
    got, how, new = _folded(model, ops, raw)
    assert isinstance(new, Affine) is not into_weights, how
    if not into_weights:
        assert "pads its input with zeros and the shift is non-zero" in how
    np.testing.assert_allclose(got, _reference(model, ops, raw), rtol=1e-4, atol=1e-4)


def test_a_per_channel_normalize_before_a_layout_change_folds_too():
    """HWC normalize per channel (axis -1), then HWC -> CHW: the layout stays, the normalize folds (per channel
    of the CHW input), and the folded network computes what the original computes on the full pipeline."""
    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    ops = [
        {"op": "normalize", "mean": [120.0, 60.0, 10.0], "std": [50.0, 20.0, 5.0], "axis": -1},
        {"op": "layout", "from": "HWC", "to": "CHW"},
    ]
    raw = rng.uniform(0, 255, size=(8, 6, 6, 3)).astype(np.float32)
    assert [op["op"] for op in split(ops, "test", raw[0]).kept] == ["layout"]
    fns = compile_pre(ops[1:], FLOAT_IN, "test")
    kept = np.stack([_apply(fns, s) for s in raw])  # (8, 3, 6, 6)
    new, how = fold_into(model, split(ops, "test", raw[0]), kept.shape[1:])
    assert "into the weights and bias of 0 (Conv2d)" in how  # no padding: exact with a shift
    with torch.no_grad():
        got = new(torch.from_numpy(kept)).numpy()
    ref = np.stack([_apply(compile_pre(ops, FLOAT_IN, "test"), s) for s in raw])
    with torch.no_grad():
        want = model(torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _recipe(exports: list[dict]) -> object:
    import dataclasses

    data = tomllib.loads((EXAMPLES / "breast-cancer.toml").read_text())
    data["export"] = exports
    return dataclasses.replace(parse_recipe(data), base_dir=str(EXAMPLES))


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, one_torch_thread):
    exports = [
        {"source": "pruned", "fold_preprocessing": True},
        {"source": "pruned", "format": "tflite", "fold_preprocessing": True},
        # per-tensor INT8 of the raw features (0.001 .. 2500): the check must refuse it
        {"source": "pruned", "precision": "int8", "mode": "dynamic", "fold_preprocessing": True},
        # ... and as an int8 TFLite input XNNPACK refuses to prepare: refused, the run goes on
        {"source": "pruned", "format": "tflite", "precision": "int8", "fold_preprocessing": True},
        {"source": "pruned", "format": "coreml", "precision": "int8", "fold_preprocessing": True},
    ]
    out = tmp_path_factory.mktemp("fold")
    return run_recipe(_recipe(exports), out, check=False), out


def _manifest(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.edgerun.json").read_text())


def test_folded_manifests_keep_only_the_ops_that_cannot_fold(tabular):
    result, out = tabular
    for name in ("pruned-fp32-folded.onnx", "pruned-fp32-folded.tflite"):
        m = _manifest(out, name)
        assert [op["op"] for op in m["preprocess"]] == ["cast", "expand_dims"]
        fold = m["provenance"]["folded_preprocessing"]
        assert [op["op"] for op in fold["ops"]] == ["normalize"] and len(fold["ops"][0]["mean"]) == 30
        assert "into the weights and bias" in fold["how"]
        check = fold["check"]
        assert check["against"] == name.replace("-folded", "") and check["reference_set_n"] == 143
        assert check["top1"] == check["top1_unfolded"] and check["top1_moved_samples"] == 0
        assert check["max_abs_diff"] < 1e-3  # float reassociation only: the same network
        assert m["provenance"]["gate"]["passed"] is True
    report = json.loads((out / "report.json").read_text())["folded_preprocessing"]
    assert report["pruned-fp32-folded.onnx"]["check"]["top1_moved_samples"] == 0
    assert "pruned-int8-dynamic-folded.onnx: folded ['normalize']" in (out / "report.txt").read_text()


def test_folded_onnx_and_tflite_agree_on_raw_rows_with_the_unfolded_accuracy(tabular):
    """Two converters and two engines on the same folded network, raw rows in: the same logits, and
    top-1 equal to what the unfolded export scored (the check's ``top1_unfolded``)."""
    _, out = tabular
    with np.load(out / "reference-test.npz") as z:
        x, y = z["x"], z["y"]
    rts = [edgerun.load(out / f"pruned-fp32-folded.{fmt}", threads=1) for fmt in ("onnx", "tflite")]
    logits = [np.stack([next(iter(rt.run(row).outputs.values()))[0] for row in x]) for rt in rts]
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-4, atol=1e-4)
    unfolded = _manifest(out, "pruned-fp32-folded.onnx")["provenance"]["folded_preprocessing"]["check"]
    assert np.mean(logits[0].argmax(1) == y) == pytest.approx(unfolded["top1_unfolded"], abs=1e-4)


def test_a_fold_that_moves_top1_past_the_gate_is_refused(tabular):
    result, out = tabular
    bad = next(p for p in result.produced if p.spec.file_name == "pruned-int8-dynamic-folded.onnx")
    assert not bad.verdict.passed and not bad.kept
    assert "folding the pre-processing moved top-1 by" in bad.verdict.reason
    assert "against pruned-int8-dynamic.onnx" in bad.verdict.reason
    assert not (out / "pruned-int8-dynamic-folded.onnx").exists()
    broken = next(p for p in result.produced if p.spec.file_name == "pruned-int8-folded.tflite")
    assert not broken.verdict.passed and broken.measured is None and "does not run" in broken.verdict.reason
    assert not (out / "pruned-int8-folded.tflite").exists()
    with pytest.raises(AccuracyGateError, match=r"(?s)2 artifact\(s\).*pruned-int8-folded.tflite: the model with"):
        result.raise_for_gate()


def test_coreml_exports_are_written_and_say_not_measured(tabular):
    result, out = tabular
    for name, precision in (("pruned-int8-folded.mlpackage", "int8"),):  # fp16 / fp32: tests/test_coreml.py
        assert (out / name / "Manifest.json").is_file()
        m = _manifest(out, name)
        assert m["format"] == "coreml" and m["precision"] == precision
        prov = m["provenance"]
        assert prov["accuracy"]["value"] is None and prov["accuracy"]["status"] == "not measured"
        assert prov["measured"] is False
        assert prov["gate"]["passed"] is None and prov["gate"]["reason"].startswith("not measured")
        assert "mlpackage" not in json.dumps(prov["metrics"])  # no size, latency or accuracy figure
        row = next(r for r in result.rows if r.name == name)
        assert (row.accuracy, row.latency_p50_ms, row.gate) == (None, None, "not measured")
    assert [op["op"] for op in _manifest(out, "pruned-int8-folded.mlpackage")["preprocess"]] == ["cast", "expand_dims"]
    assert all(p.spec.format != "coreml" for p in result.failed)
    assert "not measured: Core ML runs only on Apple hardware" in result.table
    assert main(["info", str(out / "pruned-int8-folded.mlpackage")]) == 0  # the manifest is valid as written


def test_coreml_in_a_recipe_takes_fp16_and_int8_weights_only():
    r = _recipe([{"source": "pruned", "format": "coreml", "precision": "int8"}])
    assert r.exports[0].resolved_mode == "weight-only" and r.exports[0].file_name == "pruned-int8.mlpackage"
    with pytest.raises(RecipeError, match=r"coreml int4 mode 'weight-only' is not supported"):
        _recipe([{"source": "pruned", "format": "coreml", "precision": "int4"}])
    with pytest.raises(RecipeError, match=r"onnx fp16 mode '' is not supported"):
        _recipe([{"source": "pruned", "precision": "fp16"}])


def test_fold_of_data_with_nothing_to_fold_is_refused_before_training():
    import dataclasses

    data = tomllib.loads((EXAMPLES / "breast-cancer.toml").read_text())
    data["data"]["preprocess"] = [{"op": "scale", "factor": 0.5}, {"op": "cast", "dtype": "float32"}]
    data["export"] = [{"source": "pruned", "fold_preprocessing": True}]
    with pytest.raises(RecipeError, match=r"'pruned-fp32-folded.onnx': fold_preprocessing needs .* ends in 'cast'"):
        dataclasses.replace(parse_recipe(data), base_dir=str(EXAMPLES))


def test_pte_manifest_carries_the_recipes_tensor_names():
    """A .pte holds no tensor names (input_0 / output_0 when read alone); a recipe's manifest names them
    as the ONNX and TFLite exports do."""
    from edgerun.artifact import inspect_model
    from edgerun.compress import export as ex
    from edgerun.compress.data import load_dataset
    from edgerun.compress.recipe import DataConfig
    from edgerun.demo import DEMO_DIR

    pte = DEMO_DIR / "digits-fp32.pte"
    assert [t.name for t in inspect_model(pte).inputs] == ["input_0"]
    m = ex.build_manifest(pte, "t", load_dataset(DataConfig(input_size_px=64)), {}, None)
    assert ([t.name for t in m.inputs], [t.name for t in m.outputs]) == (["input"], ["logits"])
    onnx = inspect_model(DEMO_DIR / "digits-fp32.onnx")
    assert ([t.name for t in onnx.inputs], [t.name for t in onnx.outputs]) == (["input"], ["logits"])


@pytest.mark.slow
def test_a_recipes_pte_manifest_names_its_tensors_and_the_engine_uses_them(tmp_path):
    """End to end: a recipe's .pte (ExecuTorch, ~15 s to lower) gets the ONNX export's tensor names in its
    manifest, edgerun's ExecuTorch engine reports its output under that name, and its logits are the ONNX's."""
    import importlib.util
    import os

    if importlib.util.find_spec("executorch") is None:
        if os.environ.get("CI"):
            pytest.fail("the executorch package is missing; CI installs the compress extra")
        pytest.skip("the executorch package is not installed (pip install '.[compress]')")
    exports = [{"source": "pruned", "format": "pte"}, {"source": "pruned"}]
    exports.append({"source": "pruned", "format": "pte", "fold_preprocessing": True})  # through ExecuTorch too
    result = run_recipe(_recipe(exports), tmp_path)
    m = _manifest(tmp_path, "pruned-fp32.pte")
    assert ([t["name"] for t in m["inputs"]], [t["name"] for t in m["outputs"]]) == (["input"], ["logits"])
    assert "holds no tensor names" in m["provenance"]["io_names"]
    with np.load(tmp_path / "reference-test.npz") as z:
        x = z["x"][:20]
    pte, onnx = (edgerun.load(tmp_path / f"pruned-fp32.{f}", threads=1) for f in ("pte", "onnx"))
    got = np.stack([pte.run(row).outputs["logits"] for row in x])
    ref = np.stack([onnx.run(row).outputs["logits"] for row in x])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert not result.failed
    check = _manifest(tmp_path, "pruned-fp32-folded.pte")["provenance"]["folded_preprocessing"]["check"]
    assert check["against"] == "pruned-fp32.pte" and check["top1_moved_samples"] == 0
