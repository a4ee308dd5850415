"""Random inputs (a model without bundled samples) are drawn from LiteRT benchmark_model's ranges
(tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc, CreateRandomTensorData)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.artifact import TensorSpec
from edgerun.bench.inputs import _random


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [
        ("int8", -127, 127),
        ("uint8", 0, 254),
        ("int16", 0, 99),
        ("int32", 0, 99),
        ("int64", 0, 99),
        ("uint32", 0, 99),
        ("float32", -0.5, 0.5),
        ("float64", -0.5, 0.5),
    ],
)
def test_random_inputs_use_benchmark_models_ranges(dtype: str, low: float, high: float):
    x = _random(np.random.default_rng(0), TensorSpec("x", (4096,), dtype))
    assert x.dtype == np.dtype(dtype)
    assert low <= x.min() and x.max() <= high
    # the range is used, not a corner of it: 4096 draws reach both quarters' ends
    assert x.min() < low + (high - low) / 4 and x.max() > high - (high - low) / 4


def test_a_model_indexed_by_its_int64_input_runs_on_random_data(tmp_path: Path, capsys):
    """An embedding lookup (Gather on an int64 index input) over a 100-row table: an index drawn
    from int64's whole range fails inside onnxruntime; benchmark_model's [0, 99] runs."""
    from onnx import TensorProto, helper, numpy_helper, save

    table = numpy_helper.from_array(np.arange(200, dtype=np.float32).reshape(100, 2), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"])],
        "embedding",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 2])],
        [table],
    )
    path = tmp_path / "embedding.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    from edgerun.bench.inputs import sample_inputs
    from edgerun.cli import main

    rt = edgerun.load(str(path))
    inputs, source = sample_inputs(rt.artifact, seed=0)
    assert source.startswith("random")
    for x in inputs:  # every one of the seeded inputs `edgerun bench` cycles through
        np.testing.assert_array_equal(rt.run(x).outputs["y"][:, 0], 2 * x)
    assert main(["run", str(path), "--json"]) == 0
    assert '"y"' in capsys.readouterr().out
