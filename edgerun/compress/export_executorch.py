"""ExecuTorch export (``.pte``): FP32 and INT8, both lowered to the XNNPACK backend.

The path is ExecuTorch's documented one for CPUs (docs/source/backends-xnnpack.md,
docs/source/tutorials_source/export-to-executorch-tutorial.py in pytorch/executorch):

    torch.export.export  ->  to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])  ->  to_executorch()

INT8 is PT2E static quantization with ExecuTorch's ``XNNPACKQuantizer``
(``get_symmetric_quantization_config(is_per_channel=True)``): per-channel symmetric INT8
weights, per-tensor INT8 activations observed on the recipe's calibration images (the same
first ``calibration_samples`` train images the ONNX and TFLite INT8 exports calibrate on).
The quantize/dequantize pairs PT2E inserts are folded into XNNPACK's quantized operators
when the graph is lowered, so the file holds INT8 weights inside the XNNPACK delegate blob.

Like the ONNX and TFLite exports: batch 1, BatchNorm folded (the caller passes the fused
model), and imported lazily: the ``executorch`` package is only needed to build ``.pte``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgerun.errors import CompressError


def _executorch() -> tuple[object, object]:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise CompressError(
            "exporting .pte needs the executorch package: pip install 'edgerun[compress]' (executorch==1.5.1)"
        ) from exc
    return to_edge_transform_and_lower, XnnpackPartitioner


def _lower(exported: torch.export.ExportedProgram, path: Path) -> Path:
    to_edge_transform_and_lower, partitioner = _executorch()
    program = to_edge_transform_and_lower(exported, partitioner=[partitioner()]).to_executorch()  # type: ignore[operator]
    path.write_bytes(program.buffer)
    return path


def export_pte(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """FP32 ``.pte``: every operator XNNPACK supports runs in its delegate, the rest on portable kernels."""
    from edgerun.compress.export import quiet

    sample = (torch.zeros(1, *input_shape),)
    with quiet(), torch.no_grad():
        return _lower(torch.export.export(model.eval(), sample), path)


def export_pte_int8(model: nn.Module, input_shape: tuple[int, ...], path: Path, calib: np.ndarray) -> Path:
    """INT8 ``.pte`` by PT2E static quantization (XNNPACKQuantizer), calibrated on ``calib``.

    ``calib`` holds batch-1 model inputs, shape (N, 1, *input_shape), as ``Dataset.calibration`` gives them.
    """
    from edgerun.compress.export import quiet

    _executorch()  # a clear error before any work when executorch is missing
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if len(calib) == 0:
        raise CompressError("INT8 .pte export needs calibration samples ([data] calibration_samples > 0)")
    sample = (torch.zeros(1, *input_shape),)
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    with quiet(), torch.no_grad():
        graph = torch.export.export(model.eval(), sample).module()
        prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        for x in calib:
            prepared(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        converted = convert_pt2e(prepared)
        return _lower(torch.export.export(converted, sample), path)
