"""Layer pruning (prune method "layers"): which layers can go, what removing them does, the importance
ranking, a recipe run through export and edgerun's runtime, and the recipe errors. Tiny models on 8x8
digits; the whole module runs in a few seconds on 2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from edgerun.artifact import inspect_model  # noqa: E402
from edgerun.compress import load_recipe, run_recipe  # noqa: E402
from edgerun.compress import prune as pr  # noqa: E402
from edgerun.compress.data import load_dataset  # noqa: E402
from edgerun.compress.models import BLOCKS, DigitsNet, Pointwise, count_params  # noqa: E402
from edgerun.compress.recipe import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from edgerun.compress.train import cross_entropy, fit  # noqa: E402
from edgerun.errors import CompressError, RecipeError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _expected_candidates(depth: int, width: float = 0.25) -> list[str]:
    """From the block table: features.<2i+1> is block i's depthwise conv, features.<2i+2> its pointwise layer.

    At width 0.25 and 0.5 every channel count of BLOCKS scales to a multiple of 4 (no rounding), so a
    pointwise layer keeps its width when the table's cin == cout; a depthwise conv keeps its shape when
    its stride is 1.
    """
    names = []
    for i, (cin, cout, stride) in enumerate(BLOCKS[:depth]):
        assert (cin * width) % 4 == 0 and (cout * width) % 4 == 0
        if stride == 1:
            names.append(f"features.{2 * i + 1}")
        if cin == cout:
            names.append(f"features.{2 * i + 2}")
    return names


@pytest.mark.parametrize("depth", [3, 6])
@pytest.mark.parametrize("size_px", [8, 16])
def test_candidates_are_the_shape_preserving_layers(depth, size_px):
    model = DigitsNet(ModelConfig(width=0.25, depth=depth))
    got = pr.removable_layers(model, torch.randn(1, 1, size_px, size_px))
    assert got == _expected_candidates(depth)
    assert "features.0" not in got  # the stem never goes (it maps 1 channel to many anyway)
    # ... and a layer already removed (an nn.Identity, no parameters) is not a candidate again.
    model.features[1] = nn.Identity()
    assert pr.removable_layers(model, torch.randn(1, 1, size_px, size_px)) == _expected_candidates(depth)[1:]


def test_removing_layers_removes_exactly_those_modules():
    torch.manual_seed(0)
    model = DigitsNet(ModelConfig(width=0.25, depth=6)).eval()
    original = list(model.features)
    x, y = torch.randn(64, 1, 16, 16), torch.randint(0, 10, (64,))
    before = count_params(model)
    first_scores = pr.layer_importance(model, x, y)
    assert list(first_scores) == _expected_candidates(6)
    assert count_params(model) == before and list(model.features) == original  # scoring leaves the model as it was

    removed = pr.layer_prune(model, x, y, 3)

    names = [name for name, _ in removed]
    assert len(set(names)) == 3 and set(names) <= set(_expected_candidates(6))
    assert removed[0] == (min(first_scores, key=first_scores.__getitem__), first_scores[names[0]])
    gone = {int(name.split(".")[1]) for name in names}
    for i, layer in enumerate(model.features):
        assert isinstance(layer, nn.Identity) if i in gone else layer is original[i]
    assert before - count_params(model) == sum(count_params(original[i]) for i in gone)
    out = model(x)
    assert out.shape == (64, 10)
    # BatchNorm folding (what gets exported) skips the Identity layers and computes the same function.
    assert torch.allclose(model.fused()(x), out, atol=1e-5)


def test_the_least_important_layer_goes_first():
    """A model trained with one layer held at an exact no-op: removing that layer costs nothing, the others cost."""
    torch.manual_seed(0)
    data = load_dataset(DataConfig(input_size_px=8, train_limit=400))
    model = DigitsNet(ModelConfig(width=0.25, depth=3))
    noop = model.features[6]  # Pointwise 32 -> 32, the last candidate in module order (not a tie-break win)
    assert isinstance(noop, Pointwise) and pr.removable_layers(model, torch.zeros(1, 1, 8, 8))[-1] == "features.6"
    with torch.no_grad():
        noop.fc.weight.copy_(torch.eye(32))  # its input is a ReLU6 output in [0, 6]: ReLU6(x @ I) = x
    noop.bn = nn.Identity()
    noop.fc.weight.requires_grad_(False)
    fit(model, data, TrainConfig(epochs=6), cross_entropy(model), np.random.default_rng(0))
    x = torch.from_numpy(data.model_input(data.train_x[-256:]))
    y = torch.from_numpy(data.train_y[-256:])

    scores = pr.layer_importance(model, x, y)

    assert scores["features.6"] == pytest.approx(0.0, abs=1e-6)
    assert all(score > 0.01 for name, score in scores.items() if name != "features.6"), scores
    removed = pr.layer_prune(model, x, y, 2)
    assert removed[0] == ("features.6", scores["features.6"])
    assert removed[1][1] > 0.01


RECIPE = """
name = "layers"
seed = 0

[data]
input_size_px = 8
train_limit = 600
calibration_samples = 32

[gate]
max_drop_points = 100.0   # what was built and recorded is checked here, not how well it compresses
max_drop_vs_teacher_points = 100.0

[[step]]
kind = "train"
name = "teacher"
model = {{ width = {width}, depth = {depth} }}
train = {{ epochs = {epochs} }}

[[step]]
kind = "prune"
name = "slim"
source = "teacher"
method = "layers"
{prune}
finetune = {{ epochs = 5 }}

[[export]]
source = "teacher"

[[export]]
source = "slim"

[[export]]
source = "slim"
format = "tflite"
"""


def _layer_ops(path: Path) -> list[str]:
    """Names of the Conv / MatMul nodes (one per conv / pointwise layer) of an ONNX file."""
    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "MatMul")]


def test_recipe_run_exports_a_model_without_the_removed_layers(tmp_path):
    cfg = ModelConfig(width=0.5, depth=4)
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(width=cfg.width, depth=cfg.depth, epochs=15, prune="layers = 2"))
    out = tmp_path / "out"
    run_recipe(load_recipe(path), out)

    manifest = json.loads((out / "slim-fp32.onnx.edgerun.json").read_text())
    how = manifest["provenance"]["source_model"]
    found = re.findall(r"(features\.\d+) \(([+-]\d+\.\d{3}) loss\)", how)
    n_candidates = len(_expected_candidates(cfg.depth, cfg.width))
    assert how.startswith(f"slim: layer pruning (greedy, 2 of {n_candidates} removable layers") and len(found) == 2
    removed = [name for name, _ in found]
    assert set(removed) <= set(_expected_candidates(cfg.depth, cfg.width))

    teacher, slim = inspect_model(out / "teacher-fp32.onnx"), inspect_model(out / "slim-fp32.onnx")
    fused = DigitsNet(cfg).fused()  # shapes only: what each layer weighs once BatchNorm is folded
    assert teacher.parameter_count - slim.parameter_count == sum(count_params(fused.get_submodule(n)) for n in removed)
    assert slim.parameter_count < teacher.parameter_count
    n_layers = [sum(m.op_histogram.get(op, 0) for op in ("Conv", "MatMul")) for m in (teacher, slim)]
    assert n_layers[1] == n_layers[0] - 2
    # The exported graph simply lacks the removed layers' nodes (TorchScript names them /features/features.<i>/...).
    for name in removed:
        assert any(f"/{name}/" in n for n in _layer_ops(out / "teacher-fp32.onnx"))
        assert not any(f"/{name}/" in n for n in _layer_ops(out / "slim-fp32.onnx"))
    assert f"{count_params(DigitsNet(cfg))} -> " in how

    report = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    removed_torch = sum(count_params(DigitsNet(cfg).get_submodule(n)) for n in removed)
    assert report["teacher"]["params"] - report["slim"]["params"] == removed_torch
    assert report["slim-fp32.onnx"]["accuracy"] > 0.6  # fine-tuned into a working model
    # The TFLite conversion of the same model works and computes the same function.
    assert report["slim-fp32.tflite"]["accuracy"] == pytest.approx(report["slim-fp32.onnx"]["accuracy"], abs=0.005)


@pytest.mark.parametrize(
    ("prune", "expected"),
    [
        ("layers = 0", "method 'layers' needs 'layers' > 0"),
        ("", "method 'layers' needs 'layers' > 0"),
        ("layers = 1\namount = 0.5", "'amount' does not apply to method 'layers'"),
        ("layers = 1\nthreshold = 0.1", "'threshold' does not apply to method 'layers'"),
        ("layers = -1", "layers: must be in [0, 10000]"),
    ],
)
def test_bad_layer_recipes_name_the_key(tmp_path, prune, expected):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(width=0.25, depth=3, epochs=0, prune=prune))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert expected in str(err.value)


def test_layers_key_is_only_for_method_layers(tmp_path):
    path = tmp_path / "r.toml"
    text = RECIPE.format(width=0.25, depth=3, epochs=0, prune="layers = 1\namount = 0.25")
    path.write_text(text.replace('method = "layers"', 'method = "channels"'))
    with pytest.raises(RecipeError, match="'layers' is for method 'layers' only"):
        load_recipe(path)


def test_more_layers_than_removable_is_a_clear_error(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(width=0.25, depth=3, epochs=0, prune="layers = 4"))
    with pytest.raises(CompressError) as err:
        run_recipe(load_recipe(path), tmp_path / "out")
    assert str(err.value) == (
        "prune step 'slim': layers = 4, but 'teacher' has only 3 removable layers (features.1, features.3, features.6)"
    )
