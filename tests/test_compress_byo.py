"""Your model on your data: the worked examples of docs/compress.md, run as written, and the data sources.

The three example recipes (recipes/examples/: tabular, 1-D signals, an image CNN brought as factory +
checkpoint) go teacher -> distilled student -> pruned -> INT8 ONNX and TFLite; ``edgerun run`` on the
raw test rows must give the predictions the recipe measured, so the manifests really describe the
user's input, pre-processing and labels.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

import edgerun  # noqa: E402
from edgerun.cli import main  # noqa: E402
from edgerun.compress import load_recipe, parse_recipe, run_recipe  # noqa: E402
from edgerun.compress.data import load_dataset  # noqa: E402
from edgerun.compress.gate import TeacherRef, judge  # noqa: E402
from edgerun.compress.recipe import ExportSpec, GateConfig  # noqa: E402
from edgerun.compress.refs import resolve  # noqa: E402
from edgerun.errors import RecipeError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = Path(__file__).resolve().parent.parent / "recipes" / "examples"


def _manifest(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.edgerun.json").read_text())


def _cli_predictions(tmp: Path, artifact: Path, rows: np.ndarray, capsys) -> list[int]:
    """``edgerun run MANIFEST --input row.npy --json`` on each raw row, as a user would call it."""
    out = []
    for i, row in enumerate(rows):
        path = tmp / f"row{i}.npy"
        np.save(path, row)
        capsys.readouterr()
        assert main(["run", str(artifact), "--input", str(path), "--json"]) == 0
        out.append(json.loads(capsys.readouterr().out)["top"][0]["index"])
    return out


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("breast-cancer")
    recipe = load_recipe(EXAMPLES / "breast-cancer.toml")
    return recipe, run_recipe(recipe, out), out


@pytest.fixture(scope="module")
def signal(tmp_path_factory, one_torch_thread):
    """The docs' signal recipe beside its byo.py in a fresh folder, with the checkpoint the docs'
    first command writes (the user's already trained teacher)."""
    work = tmp_path_factory.mktemp("signals")
    for name in ("signals.toml", "byo.py"):
        shutil.copy(EXAMPLES / name, work / name)
    resolve("byo.py:train_signal_teacher", work, "test")(work / "signal-teacher.pt")
    recipe = load_recipe(work / "signals.toml")
    return recipe, run_recipe(recipe, work / "out"), work / "out"


@pytest.fixture(scope="module")
def scan(tmp_path_factory, one_torch_thread):
    """The docs' image recipe beside scans.py in a fresh folder, with the checkpoint its first
    command writes (the user's trained CNN)."""
    work = tmp_path_factory.mktemp("scans")
    for name in ("scans.toml", "scans.py"):
        shutil.copy(EXAMPLES / name, work / name)
    resolve("scans.py:train_teacher", work, "test")(work / "scan-teacher.pt")
    recipe = load_recipe(work / "scans.toml")
    return recipe, run_recipe(recipe, work / "out"), work / "out"


def test_tabular_manifests_describe_30_standardized_features_and_the_users_labels(tabular):
    recipe, result, out = tabular
    assert not result.failed
    data = load_dataset(recipe.data, recipe.base_dir)
    mean, std = data.train_x.astype(np.float64).mean(0), data.train_x.astype(np.float64).std(0)
    for name in ("pruned-int8.onnx", "pruned-int8.tflite"):
        m = _manifest(out, name)
        assert [(s["shape"], np.dtype(s["dtype"]).kind) for s in m["raw_inputs"]] == [([30], "f")]
        pre = m["preprocess"]
        assert [op["op"] for op in pre[:3]] == ["cast", "normalize", "expand_dims"]
        # Per-feature standardization with the train split's statistics (not validation's, not test's).
        np.testing.assert_allclose(pre[1]["mean"], mean, rtol=1e-6)
        np.testing.assert_allclose(pre[1]["std"], std, rtol=1e-6)
        assert m["labels"] == ["malignant", "benign"]
        gate = m["provenance"]["gate"]
        assert gate["teacher"] == "teacher" and gate["max_drop_vs_teacher_points"] == 1.5
        assert "drop_vs_teacher_points" in gate and m["provenance"]["accuracy"]["n"] == 143


@pytest.mark.parametrize("name", ["pruned-int8.onnx", "pruned-int8.tflite"])
def test_edgerun_run_on_raw_tabular_rows_reproduces_the_recipe(tabular, name, tmp_path, capsys):
    recipe, result, out = tabular
    data = load_dataset(recipe.data, recipe.base_dir)
    produced = next(p for p in result.produced if p.spec.file_name == name)
    preds = _cli_predictions(tmp_path, out / name, data.test_x, capsys)
    rt = edgerun.load(out / name)
    assert preds == [rt.run(x).top[0].index for x in data.test_x]  # the gate's own predictions
    assert np.mean(np.array(preds) == data.test_y) == produced.measured.accuracy
    assert produced.measured.accuracy >= 0.9


def test_signal_manifests_take_one_raw_ncw_signal(signal):
    recipe, result, out = signal
    assert not result.failed, [p.verdict.reason for p in result.failed]
    for name in ("pruned-int8.onnx", "pruned-int8.tflite"):
        m = _manifest(out, name)
        assert m["raw_inputs"] == [{"name": "input", "shape": [1, 256], "dtype": "float32", "quant": None}]
        assert m["preprocess"][:2] == [
            {"op": "normalize", "mean": [0.0], "std": [0.75], "axis": -1},
            {"op": "expand_dims", "axis": 0},
        ]
        assert m["labels"] == ["sine", "square", "noise"]  # from the data function
    folded = _manifest(out, "pruned-int8-folded.onnx")  # std only (mean 0): exact in a padded conv
    assert folded["preprocess"] == [{"op": "expand_dims", "axis": 0}]
    fold = folded["provenance"]["folded_preprocessing"]
    assert fold["how"].startswith("into the weights and bias of features.0 (Conv1d)")
    assert fold["check"]["against"] == "pruned-int8.onnx" and fold["check"]["top1_moved_samples"] == 0
    rows = {r.name: r for r in result.rows}
    assert rows["teacher"].params > rows["student"].params > rows["pruned"].params


def test_edgerun_run_on_raw_signals_reproduces_the_recipe(signal, tmp_path, capsys):
    recipe, result, out = signal
    data = load_dataset(recipe.data, recipe.base_dir)
    for produced in result.produced:
        preds = _cli_predictions(tmp_path, produced.path, data.test_x[::3], capsys)
        rt = edgerun.load(produced.path)
        assert preds == [rt.run(x).top[0].index for x in data.test_x[::3]]
        all_preds = np.array([rt.run(x).top[0].index for x in data.test_x])
        assert np.mean(all_preds == data.test_y) == produced.measured.accuracy


def test_image_manifests_take_one_raw_uint8_scan_with_the_teachers_preprocessing(scan):
    recipe, result, out = scan
    assert not result.failed, [p.verdict.reason for p in result.failed]
    for name in ("pruned-int8.onnx", "pruned-int8.tflite"):
        m = _manifest(out, name)
        assert m["raw_inputs"] == [{"name": "input", "shape": [32, 32, 3], "dtype": "uint8", "quant": None}]
        assert m["preprocess"][:5] == [
            {"op": "cast", "dtype": "float32"},
            {"op": "resize", "size": [16, 16], "method": "bilinear", "layout": "HWC"},
            {"op": "layout", "from": "HWC", "to": "CHW"},
            {"op": "normalize", "mean": [168.0, 161.0, 166.0], "std": [63.0, 54.0, 17.0], "axis": 0},
            {"op": "expand_dims", "axis": 0},
        ]
        assert m["labels"][:3] == ["zero", "one", "two"] and len(m["labels"]) == 10  # from the recipe
        assert m["provenance"]["accuracy"]["n"] == 450
    rows = {r.name: r for r in result.rows}
    assert rows["teacher"].params > rows["student"].params > rows["pruned"].params


def test_image_recipe_ops_are_the_teachers_own_preprocessing(scan):
    """The teacher's FP32 ONNX through edgerun (the recipe's declared ops on raw uint8 images) scores what the
    teacher scores through the user's own torch pipeline (scans.to_model_input), within one image of 450
    (bilinear resizes in torch and numpy may round differently)."""
    recipe, result, out = scan
    scans = resolve("scans.py:to_model_input", Path(recipe.base_dir), "test")
    teacher = resolve("scans.py:scan_cnn", Path(recipe.base_dir), "test")(3, 10, width=16)
    teacher.load_state_dict(
        torch.load(Path(recipe.base_dir) / "scan-teacher.pt", weights_only=True)["model_state_dict"]
    )
    data = load_dataset(recipe.data, recipe.base_dir)
    with torch.no_grad():
        own = float((teacher.eval()(scans(data.test_x)).argmax(1).numpy() == data.test_y).mean())
    gate = _manifest(out, "pruned-int8.onnx")["provenance"]["gate"]
    assert abs(gate["teacher_accuracy"] - own) <= 1 / 450 + 1e-4 and own > 0.95


def test_edgerun_run_on_raw_scans_reproduces_the_recipe(scan, tmp_path, capsys):
    recipe, result, out = scan
    data = load_dataset(recipe.data, recipe.base_dir)
    for produced in result.produced:
        rt = edgerun.load(produced.path)
        all_preds = [rt.run(x).top[0].index for x in data.test_x]
        assert np.mean(np.array(all_preds) == data.test_y) == produced.measured.accuracy
        assert _cli_predictions(tmp_path, produced.path, data.test_x[::9], capsys) == all_preds[::9]


# --- models brought as files -------------------------------------------------------------


def test_teacher_from_an_exported_program(tmp_path):
    """A torch.export ExportedProgram (.pt2, dynamic batch) as a load step's teacher, distilled and exported."""
    byo = resolve("byo.py:signal_cnn", EXAMPLES, "test")
    teacher = byo(1, 3, width=8).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(teacher, (torch.zeros(2, 1, 256),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "teacher.pt2")
    recipe = parse_recipe(
        {
            "name": "pt2",
            "data": {"source": "python", "factory": "byo.py:signals", "args": {"per_class": 20, "test_per_class": 5}},
            "gate": {"max_drop_points": 100.0, "max_drop_vs_teacher_points": 100.0},
            "step": [
                {"kind": "load", "name": "teacher", "model": {"file": str(tmp_path / "teacher.pt2")}},
                {
                    "kind": "distill",
                    "name": "student",
                    "teachers": ["teacher"],
                    "model": {"factory": "byo.py:signal_cnn", "args": {"width": 4}},
                    "train": {"epochs": 1, "augment_shift_px": 0},
                },
            ],
            "export": [{"source": "student"}],
        }
    )
    recipe = dataclasses.replace(recipe, base_dir=str(EXAMPLES))
    result = run_recipe(recipe, tmp_path / "out")
    rows = {r.name: r for r in result.rows}
    assert rows["teacher"].params == sum(p.numel() for p in teacher.parameters())
    prov = _manifest(tmp_path / "out", "student-fp32.onnx")["provenance"]
    assert prov["gate"]["teacher"] == "teacher" and prov["recipe"].startswith("pt2: teacher -> student")


# --- data sources ----------------------------------------------------------------------------


def _cfg(**data):
    return parse_recipe({"name": "d", "data": data, "step": [{"kind": "train", "name": "t"}]}).data


def test_npz_source_split_here_with_labels_from_the_file(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 2, 16)).astype(np.float32), np.repeat([0, 1], 50)
    np.savez(tmp_path / "d.npz", x=x, y=y, labels=np.array(["a", "b"]))
    cfg = _cfg(
        source="npz", path="d.npz", validation_fraction=0.25,
        preprocess=[{"op": "normalize", "per": "channel", "axis": 0}],
    )  # fmt: skip
    data = load_dataset(cfg, tmp_path)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (56, 19, 25)
    assert data.labels == ("a", "b") and data.input_shape == (2, 16)
    op = data.pre_ops[0]
    assert op["axis"] == 0 and len(op["mean"]) == 2
    np.testing.assert_allclose(op["mean"], data.train_x.astype(np.float64).mean(axis=(0, 2)), rtol=1e-5)
    assert data.selection()[2].startswith("the validation split")  # selection steps score here, not on test


def test_csv_source_string_labels_sorted_into_classes(tmp_path):
    lines = ["f1,f2,kind"] + [f"{i},{i % 7},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(_cfg(source="csv", path="t.csv", label_column="kind"), tmp_path)
    assert data.labels == ("cat", "dog") and data.train_x.shape[1:] == (2,)
    assert set(data.test_y) <= {0, 1} and len(data.test_y) == 10


def test_image_folder_source_one_class_per_subfolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["benign", "malignant"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 100, size=(12, 10, 3)) + 100 * k
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    cfg = _cfg(
        source="images", path="imgs", test_fraction=0.34,
        preprocess=[
            {"op": "resize", "size": [8, 8], "layout": "HWC"},
            {"op": "layout", "from": "HWC", "to": "CHW"},
            {"op": "normalize", "per": "channel", "axis": 0},
        ],
    )  # fmt: skip
    data = load_dataset(cfg, tmp_path)
    assert data.labels == ("benign", "malignant") and data.raw_name == "image"
    assert data.train_x.shape[1:] == (12, 10, 3) and data.train_x.dtype == np.uint8
    assert data.input_shape == (3, 8, 8) and data.pre_ops[0] == {"op": "cast", "dtype": "float32"}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"source": "csv", "path": "x.csv"}, "needs 'label_column'"),
        ({"source": "npz"}, "needs either 'path'"),
        ({"source": "python"}, "needs factory"),
        ({"source": "npz", "path": "a.npz", "input_size_px": 8}, "'input_size_px' does not apply to source 'npz'"),
        ({"source": "npz", "path": "a.npz", "preprocess": [{"op": "scale", "factr": 2}]}, "unknown key 'factr'"),
        ({"source": "npz", "path": "a.npz", "preprocess": [{"op": "normalize"}]}, "either 'per'"),
        ({"source": "npz", "path": "a.npz", "preprocess": [{"op": "normalize", "per": "channel"}]}, "needs 'axis'"),
    ],
)
def test_data_typos_name_the_key(data, match):
    with pytest.raises(RecipeError, match=match):
        _cfg(**data)


@pytest.mark.parametrize(
    ("step", "match"),
    [
        ({"kind": "load", "name": "t", "model": {"factory": "m:f"}}, "needs 'weights'"),
        ({"kind": "train", "name": "t", "model": {"arch": "resnet"}}, "not built in"),
        ({"kind": "train", "name": "t", "model": {"factory": "nocolon"}}, "module:function"),
        ({"kind": "train", "name": "t", "model": {"factory": "m:f", "wieghts": "w.pt"}}, "unknown key 'wieghts'"),
        ({"kind": "load", "name": "t", "model": {"file": "m.onnx"}}, "expected a .pt2"),
    ],
)
def test_model_typos_name_the_key(step, match):
    with pytest.raises(RecipeError, match=match):
        parse_recipe({"name": "m", "step": [step]})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_recipes_are_valid(path):
    assert load_recipe(path).steps


def test_failing_gate_names_the_step_that_lost_the_accuracy():
    teacher = TeacherRef("teacher", 0.98, (("step 'student' (distill)", 0.5), ("step 'pruned' (prune)", 2.0)))
    verdict = judge(ExportSpec(source="pruned"), GateConfig(), 0.955, 0.96, teacher)
    assert not verdict.passed and verdict.lost_in == "step 'pruned' (prune)"
    assert "2.50 points below the teacher 'teacher'" in verdict.reason
    ok = judge(ExportSpec(source="pruned", max_drop_vs_teacher_points=3.0), GateConfig(), 0.955, 0.96, teacher)
    assert ok.passed and ok.to_dict()["drop_vs_teacher_points"] == 2.5


def test_keep_best_restores_the_best_validation_epoch(tabular):
    """keep_best: the weights of the epoch with the best top-1 on the validation split (never test)."""
    from edgerun.compress.models import build_model
    from edgerun.compress.recipe import ModelConfig, TrainConfig
    from edgerun.compress.train import BestEpoch, cross_entropy, fit

    recipe = tabular[0]
    data = load_dataset(recipe.data, recipe.base_dir)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(factory="byo.py:mlp", args={"hidden": [8]}), EXAMPLES, {"in_features": 30, "num_classes": 2}
    )
    probe, seen = BestEpoch(data), []
    assert probe.what.startswith("the validation split")
    cfg = TrainConfig(epochs=6, lr=3e-2, batch_size=32, augment_shift_px=0, keep_best=True)

    def record(epoch: int) -> None:
        probe.see(model, epoch)
        seen.append(probe.accuracy)

    fit(model, data, cfg, cross_entropy(model), np.random.default_rng(0), after_epoch=record)
    final = float((model(torch.from_numpy(data.model_input(data.val_x))).argmax(1).numpy() == data.val_y).mean())
    assert final == max(seen)
