"""Core ML export (``.mlpackage``, an ML program) of a trained torch model, with its edgerun manifest.

coremltools converts on Linux; it cannot run the result off Apple hardware, so an export made
here is **not measured** and passes no accuracy gate: its manifest says so
(``provenance.accuracy`` is absent, ``provenance.measured`` false, with the reason). Measure it
on a Mac (``edgerun bench MODEL.mlpackage`` there; ``edgerun.engines.coreml``).

- ``fp32``: ``coremltools.convert(..., compute_precision=FLOAT32)``;
- ``fp16``: ``compute_precision=FLOAT16`` (weights and activations in float16, Core ML's default);
- ``int8``: the FP32 program with its weights quantized per channel, symmetric, by
  ``coremltools.optimize.coreml.linear_quantize_weights`` (``OpLinearQuantizerConfig(mode=
  "linear_symmetric", dtype="int8")``): weight-only, activations stay float, so no calibration.

The conversion goes through TorchScript (``torch.jit.trace``), the path coremltools documents
for PyTorch. Inputs and outputs are float32 (``input`` / ``logits``, batch 1), as in the ONNX and
TFLite exports. Deployment target iOS 16 / macOS 13 (ML program, opset CoreML6): the oldest that
holds int8 weights as ``constexpr_affine_dequantize``. Needs the ``coreml`` extra.
coremltools 9.0 warns that torch 2.13 is newer than the 2.7 it was tested with; the demo network
converts (tests/test_coreml.py), other networks may hit unsupported ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgerun.errors import CompressError

__all__ = ["COREML_PRECISIONS", "export_coreml"]

COREML_PRECISIONS = ("fp32", "fp16", "int8")
NOT_MEASURED = (
    "Core ML runs only on Apple hardware: this export was converted here and not run; "
    "measure its accuracy and latency on a Mac (edgerun bench MODEL.mlpackage)"
)


def _convert(model: Any, input_shape: tuple[int, ...], precision: str) -> Any:
    import numpy as np
    import torch

    from edgerun.compress.export import quiet

    with quiet():
        import coremltools as ct

        sample = torch.zeros(1, *input_shape)
        traced = torch.jit.trace(model.eval(), sample)
        mlmodel = ct.convert(
            traced,
            inputs=[ct.TensorType(name="input", shape=tuple(sample.shape), dtype=np.float32)],
            outputs=[ct.TensorType(name="logits", dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        )
        if precision == "int8":
            from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

            config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=0)
            mlmodel = linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=config))
    return mlmodel


def export_coreml(
    model: Any,
    input_shape: tuple[int, ...],
    path: Path,
    precision: str = "fp32",
    *,
    name: str | None = None,
    data: Any = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Convert ``model`` to ``path`` (a new ``.mlpackage``) and write ``path.edgerun.json`` beside it.

    ``data`` (an ``edgerun.compress.data.Dataset``) gives the manifest its pre/post-processing,
    labels and raw input spec; without it the manifest has the model's IO only.
    """
    from edgerun.artifact import Manifest, write_manifest
    from edgerun.compress.export import raw_spec
    from edgerun.coreml import coreml_info, package_sha256

    path = Path(path)
    if precision not in COREML_PRECISIONS:
        raise CompressError(f"Core ML export: precision {precision!r} unknown; expected one of {COREML_PRECISIONS}")
    if path.suffix != ".mlpackage":
        raise CompressError(f"Core ML export: {path} must end in .mlpackage (a Core ML package is a folder)")
    if path.exists():
        raise CompressError(f"Core ML export: {path} exists; edgerun does not write over it (remove it or pick a name)")
    try:
        _convert(model, input_shape, precision).save(str(path))
    except ImportError as exc:
        raise CompressError("Core ML export needs coremltools: pip install 'edgerun[coreml]'") from exc
    info = coreml_info(path)
    pre: list[dict[str, Any]] = []
    post: list[dict[str, Any]] = []
    if data is not None:
        from edgerun.compress.data import manifest_pipeline

        pre, post = manifest_pipeline(data)
    manifest = Manifest(
        name=name or path.stem,
        format="coreml",
        model_file=path.name,
        sha256=package_sha256(path),
        precision=precision,
        inputs=info["inputs"],
        outputs=info["outputs"],
        raw_inputs=(raw_spec(data),) if data is not None else None,
        preprocess=tuple(pre),
        postprocess=tuple(post),
        labels=tuple(data.labels) if data is not None else (),
        provenance={
            **(provenance or {}),
            "exporter": f"coremltools {info['versions'].get('coremltools', '?')}, ML program "
            f"{info['versions'].get('mil_opset', '?')}",
            "measured": False,
            "not_measured_reason": NOT_MEASURED,
        },
    )
    write_manifest(manifest, path)
    return path
