"""Recipe steps end to end (TOML -> steps -> exports -> edgerun's runtime -> manifest / report).

What tests/test_compress_export.py does not run through a recipe: a lottery ticket and dynamic
sparse training (RigL, SET) with the sparsity they record, progressive distillation (teacher ->
assistant -> student), multi-teacher distillation with a non-default aggregation, and the TFLite
INT4 weight-only export. Tiny models on 8x8 digits; the module's one recipe run takes ~15 s on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
onnx = pytest.importorskip("onnx")

import edgerun  # noqa: E402
from edgerun.artifact import inspect_model  # noqa: E402
from edgerun.compress import load_recipe, run_recipe  # noqa: E402
from edgerun.compress.models import DigitsNet, count_params  # noqa: E402
from edgerun.compress.recipe import ModelConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TEACHER = ModelConfig(width=0.5, depth=3)
LOTTERY_ROUNDS, LOTTERY_AMOUNT = 2, 0.3
SPARSITY = {"rigl": 0.7, "set": 0.6}

RECIPE = f"""
name = "steps"
seed = 0

[data]
input_size_px = 8
train_limit = 600
calibration_samples = 32

[gate]
max_drop_points = 100.0   # these tests check what was built and recorded, not how well it compresses
max_drop_vs_teacher_points = 100.0

[[step]]
kind = "train"
name = "teacher"
model = {{ width = {TEACHER.width}, depth = {TEACHER.depth} }}
train = {{ epochs = 15 }}

[[step]]
kind = "train"
name = "teacher2"
model = {{ width = 0.5, depth = 2 }}
train = {{ epochs = 15 }}

# Progressive distillation: the documented chain, each step naming the previous one as its teacher.
[[step]]
kind = "distill"
name = "assistant"
teachers = ["teacher"]
model = {{ width = 0.375, depth = 3 }}
train = {{ epochs = 15 }}

[[step]]
kind = "distill"
name = "student"
teachers = ["assistant"]
model = {{ width = 0.25, depth = 3 }}
train = {{ epochs = 15, lr = 1e-2 }}

[[step]]
kind = "distill"
name = "multi"
teachers = ["teacher", "teacher2"]
aggregation = "confidence"
model = {{ width = 0.25, depth = 3 }}
train = {{ epochs = 15, lr = 1e-2 }}

[[step]]
kind = "lottery"
name = "ticket"
model = {{ width = {TEACHER.width}, depth = {TEACHER.depth} }}
train = {{ epochs = 10 }}
rounds = {LOTTERY_ROUNDS}
amount_per_round = {LOTTERY_AMOUNT}

[[step]]
kind = "sparse-train"
name = "rigl"
method = "rigl"
model = {{ width = {TEACHER.width}, depth = {TEACHER.depth} }}
train = {{ epochs = 15 }}
sparsity = {SPARSITY["rigl"]}
update_every_steps = 3

[[step]]
kind = "sparse-train"
name = "set"
method = "set"
model = {{ width = {TEACHER.width}, depth = {TEACHER.depth} }}
train = {{ epochs = 15 }}
sparsity = {SPARSITY["set"]}
update_every_steps = 3

[[export]]
source = "student"

[[export]]
source = "assistant"

[[export]]
source = "multi"

[[export]]
source = "ticket"

[[export]]
source = "rigl"

[[export]]
source = "set"

[[export]]
source = "teacher"
format = "tflite"
precision = "int4"

[[export]]
source = "teacher"
format = "tflite"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steps")
    path = tmp / "steps.toml"
    path.write_text(RECIPE)
    out = tmp / "out"
    result = run_recipe(load_recipe(path), out)
    report = json.loads((out / "report.json").read_text())
    return result, out, {r["name"]: r for r in report["rows"]}, path


def _manifest(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.edgerun.json").read_text())


def _runtime_accuracy(path: Path) -> float:
    """Top-1 of the artifact through edgerun's runtime on the samples its manifest names."""
    rt = edgerun.load(path)
    samples = np.load(path.parent / rt.artifact.manifest.samples)
    return float(np.mean([rt.run(x).top[0].index == y for x, y in zip(samples["x"], samples["y"])]))


def _weights(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """The weight initializer of every Conv / MatMul / Gemm of an FP32 ONNX file, by node name."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {n.name: (n.op_type, inits[n.input[1]]) for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}


def _zeros(arrays) -> int:
    return sum(int((a == 0).sum()) for a in arrays)


# --- lottery ticket and dynamic sparse training ------------------------------------------


def _check_recorded_sparsity(name: str, out: Path, rows: dict, zero_weights: int) -> dict:
    """The torch row, the export row and the manifest agree with the zeros counted in the exported file."""
    torch_row, export_row = rows[name], rows[f"{name}-fp32.onnx"]
    prov = _manifest(out, f"{name}-fp32.onnx")["provenance"]
    # Every zero parameter of the step's model is a zero weight of the file (BN folding keeps zeros zero).
    assert torch_row["params"] == count_params(DigitsNet(TEACHER))
    assert torch_row["params"] - torch_row["nonzero_params"] == zero_weights
    recorded = round(zero_weights / torch_row["params"], 4)
    assert torch_row["sparsity"] == recorded > 0.3
    assert prov["metrics"]["weight_sparsity"] == recorded
    assert export_row["sparsity"] == pytest.approx(recorded, abs=1e-3)  # re-applied to the file's count
    assert prov["accuracy"]["value"] == pytest.approx(_runtime_accuracy(out / f"{name}-fp32.onnx"), abs=1e-4)
    return prov


def test_lottery_ticket_reaches_the_requested_sparsity_and_records_it(run):
    _, out, rows, _ = run
    weights = [w for _, w in _weights(out / "ticket-fp32.onnx").values()]
    n = sum(w.size for w in weights)
    # Each round prunes amount_per_round of the weights still alive, globally (torch rounds per round).
    expected = 0
    for _ in range(LOTTERY_ROUNDS):
        expected += round(LOTTERY_AMOUNT * (n - expected))
    zeros = _zeros(weights)
    assert expected <= zeros <= expected + 0.001 * n
    assert zeros / n == pytest.approx(1 - (1 - LOTTERY_AMOUNT) ** LOTTERY_ROUNDS, abs=1e-3)
    # Global: the threshold is shared, so layers end at different sparsities.
    per_layer = [float((w == 0).mean()) for w in weights]
    assert max(per_layer) - min(per_layer) > 0.1
    prov = _check_recorded_sparsity("ticket", out, rows, zeros)
    how = prov["source_model"]
    assert how.startswith("ticket: lottery ticket: 2 rounds of 30% global magnitude pruning, rewind to epoch 0")
    recorded = float(re.search(r"weight sparsity ([\d.]+)%", how).group(1)) / 100
    assert recorded == pytest.approx(zeros / n, abs=6e-4)
    assert prov["recipe"] == "steps: ticket -> onnx fp32"
    assert rows["ticket"]["accuracy"] > 0.5  # the winning ticket was trained, not just pruned


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_sparse_training_holds_the_requested_sparsity_and_records_it(run, method):
    _, out, rows, _ = run
    sparsity = SPARSITY[method]
    layers = _weights(out / f"{method}-fp32.onnx")
    sparse = [w for op, w in layers.values() if op in ("MatMul", "Gemm")]  # the Linear / pointwise layers
    assert len(sparse) == TEACHER.depth + 1
    for w in sparse:  # per layer, to the requested fraction (rounded to whole weights)
        assert round(sparsity * w.size) <= int((w == 0).sum()) <= round(sparsity * w.size) + 0.005 * w.size
    dense = [w for op, w in layers.values() if op == "Conv"]  # stem and depthwise convs stay dense
    assert _zeros(dense) == 0
    prov = _check_recorded_sparsity(method, out, rows, _zeros(sparse))
    how = prov["source_model"]
    assert f"dynamic sparse training ({method}, sparsity {sparsity:.0%}" in how
    recorded = float(re.search(r"sparse-trained layers ([\d.]+)%", how).group(1)) / 100
    assert recorded == pytest.approx(_zeros(sparse) / sum(w.size for w in sparse), abs=6e-4)
    assert recorded == pytest.approx(sparsity, abs=2e-3)
    assert rows[method]["accuracy"] > 0.5


# --- distillation ------------------------------------------------------------------------


def test_progressive_distillation_chain(run):
    _, out, rows, recipe_path = run
    teacher, assistant, student = rows["teacher"], rows["assistant"], rows["student"]
    assert teacher["params"] > assistant["params"] > student["params"]
    assert (assistant["parent"], student["parent"]) == ("teacher", "assistant")
    sizes = [inspect_model(out / f"{s}-fp32.onnx").parameter_count for s in ("assistant", "student")]
    assert sizes[0] > sizes[1]
    prov = _manifest(out, "student-fp32.onnx")["provenance"]
    assert prov["source_model"].startswith("student: distilled from ['assistant'] (average)")
    assert prov["recipe"] == "steps: teacher -> assistant -> student -> onnx fp32"
    assert prov["recipe_sha256"] == hashlib.sha256(recipe_path.read_bytes()).hexdigest()
    assert _manifest(out, "assistant-fp32.onnx")["provenance"]["source_model"].startswith(
        "assistant: distilled from ['teacher']"
    )
    # Both links learned (10 classes: chance is 0.1), measured on the exported files through the runtime.
    for name in ("assistant", "student"):
        acc = _runtime_accuracy(out / f"{name}-fp32.onnx")
        assert acc == pytest.approx(rows[f"{name}-fp32.onnx"]["accuracy"], abs=1e-4)
        assert acc > 0.5


def test_multi_teacher_confidence_distillation(run):
    _, out, rows, _ = run
    assert rows["multi"]["parent"] == "teacher,teacher2"
    prov = _manifest(out, "multi-fp32.onnx")["provenance"]
    assert prov["source_model"].startswith("multi: distilled from ['teacher', 'teacher2'] (confidence)")
    assert prov["recipe"] == "steps: teacher -> multi -> onnx fp32"  # the lineage follows the first teacher
    assert _runtime_accuracy(out / "multi-fp32.onnx") > 0.5


WEIGHTED = """
name = "weighted"
[data]
input_size_px = 8
train_limit = 300
[gate]
max_drop_vs_teacher_points = 100.0  # tiny under-trained models: the digests are the point here
[[step]]
kind = "train"
name = "a"
model = {{ width = 0.25, depth = 2 }}
train = {{ epochs = 4 }}
[[step]]
kind = "train"
name = "b"
model = {{ width = 0.25, depth = 3 }}
train = {{ epochs = 4 }}
[[step]]
kind = "distill"
name = "student"
model = {{ width = 0.25, depth = 2 }}
train = {{ epochs = 4 }}
{teachers}
[[export]]
source = "student"
"""


def test_weighted_aggregation_reaches_the_loss(tmp_path):
    """Weights (1, 0) over teachers [a, b] train the same student, bit for bit, as teacher a alone; (0, 1) do not."""
    digests = {}
    for key, teachers in {
        "a alone": 'teachers = ["a"]',
        "a, b weighted 1, 0": 'teachers = ["a", "b"]\naggregation = "weighted"\nteacher_weights = [1.0, 0.0]',
        "a, b weighted 0, 1": 'teachers = ["a", "b"]\naggregation = "weighted"\nteacher_weights = [0.0, 1.0]',
    }.items():
        folder = tmp_path / str(len(digests))
        folder.mkdir()
        (folder / "r.toml").write_text(WEIGHTED.format(teachers=teachers))
        run_recipe(load_recipe(folder / "r.toml"), folder / "out")
        prov = _manifest(folder / "out", "student-fp32.onnx")["provenance"]
        assert ("(weighted)" in prov["source_model"]) == ("weighted" in teachers)
        digests[key] = _manifest(folder / "out", "student-fp32.onnx")["sha256"]
    assert digests["a, b weighted 1, 0"] == digests["a alone"]
    assert digests["a, b weighted 0, 1"] != digests["a alone"]


# --- TFLite INT4 weight-only -------------------------------------------------------------


def test_tflite_int4_weight_only_export(run):
    result, out, rows, _ = run
    path, fp32 = out / "teacher-int4.tflite", out / "teacher-fp32.tflite"
    assert path.is_file()
    manifest = _manifest(out, "teacher-int4.tflite")
    assert manifest["precision"] == "int4" and manifest["format"] == "tflite"
    assert manifest["provenance"]["recipe"] == "steps: teacher -> tflite int4 weight-only"
    # edgerun reads int4 from the file itself (the flatbuffer's tensor types), not only from the manifest.
    info = inspect_model(path)
    assert info.precision == "int4"
    linear_weights = sum(m.weight.numel() for m in DigitsNet(TEACHER).modules() if isinstance(m, torch.nn.Linear))
    assert info.parameter_dtypes.get("int4", 0) >= linear_weights
    assert manifest["provenance"]["metrics"]["parameter_dtypes"] == info.parameter_dtypes
    assert inspect_model(fp32).precision == "fp32"
    assert path.stat().st_size < 0.75 * fp32.stat().st_size
    # Runs through edgerun's runtime with float IO, and the accuracy it reports is what the runtime gives.
    rt = edgerun.load(path)
    assert rt.artifact.precision == "int4" and rt.artifact.inputs[0].dtype == "float32"
    acc = _runtime_accuracy(path)
    assert acc == pytest.approx(manifest["provenance"]["accuracy"]["value"], abs=1e-4)
    assert acc == pytest.approx(rows["teacher-int4.tflite"]["accuracy"], abs=1e-4)
    assert acc > 0.7 and rows["teacher-int4.tflite"]["precision"] == "int4"
    int4 = next(p for p in result.produced if p.spec.file_name == "teacher-int4.tflite")
    assert int4.verdict.passed and int4.verdict.drop_points == pytest.approx(
        (manifest["provenance"]["gate"]["baseline_accuracy"] - acc) * 100, abs=0.02
    )
