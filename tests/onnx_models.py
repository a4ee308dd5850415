"""Small ONNX graphs that several test files build with onnx's own helper (a real ModelProto)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gather_model(path: Path, table: np.ndarray, n_indices: int) -> Path:
    """``y = table[idx]``: a float table looked up by an int64 index input ``idx`` of ``n_indices``
    values (an embedding): an index past the table fails inside onnxruntime's Gather kernel."""
    from onnx import TensorProto, helper, numpy_helper, save

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"])],
        "gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [n_indices])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n_indices, table.shape[1]])],
        [numpy_helper.from_array(table.astype(np.float32), "table")],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
