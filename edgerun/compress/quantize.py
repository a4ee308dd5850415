"""Post-training quantization of exported FP32 files (ONNX with onnxruntime, TFLite with ai-edge-quantizer).

onnx  int8 static       QDQ, per-channel int8 weights, int8 activations calibrated on real images
onnx  mixed             the same QDQ int8 with the most sensitive layers kept FP32 (edgerun/compress/mixed.py)
onnx  int8 dynamic      int8 weights, activations quantized at run time (no calibration)
onnx  int4 weight-only  MatMulNBits, block 32, symmetric; Gemm is rewritten to MatMul first
tflite int8 static      full integer, int8 input and output
tflite int4 weight-only int4 channel-wise weights, float activations
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edgerun.compress.export import quiet, strip_onnx_noise


class _CalibReader:
    """onnxruntime CalibrationDataReader over batch-1 model inputs."""

    def __init__(self, input_name: str, calib: np.ndarray):
        self._it = iter([{input_name: x} for x in calib])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def onnx_preprocess(fp32: Path, out: Path) -> Path:
    """onnxruntime's ``quant_pre_process`` (shape inference, graph optimization) into ``out``.

    It renames nodes (a MatMul + Add becomes ``<name>/MatMulAddFusion``, a Gemm), so layer
    names for ``nodes_to_exclude`` must come from this file (``onnx_quantizable_nodes``).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet():
        quant_pre_process(str(fp32), str(out))
    return out


def onnx_int8_static(
    fp32: Path, out: Path, calib: np.ndarray, nodes_to_exclude: tuple[str, ...] = (), *, preprocessed: bool = False
) -> Path:
    """QDQ int8: per-channel symmetric weights, MinMax-calibrated per-tensor activations.

    ``nodes_to_exclude`` stay FP32 (names of the pre-processed graph); with ``preprocessed``
    the input is already ``onnx_preprocess``'s output and is quantized as is.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        pre = fp32 if preprocessed else onnx_preprocess(fp32, Path(tmp) / "pre.onnx")
        with quiet():
            quantize_static(
                str(pre),
                str(out),
                _CalibReader(_onnx_input_name(fp32), calib),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(nodes_to_exclude),
            )
    strip_onnx_noise(out)
    return out


def onnx_int8_dynamic(fp32: Path, out: Path) -> Path:
    """Dynamic int8: weights stored int8, activation ranges computed per inference."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    strip_onnx_noise(out)
    return out


def onnx_int4(fp32: Path, out: Path, block_size: int = 32) -> Path:
    """MatMulNBits 4-bit weight-only on every MatMul with a constant weight.

    The quantizer only handles MatMul, and torch exports a 2-D Linear as Gemm, so Gemm
    nodes are first rewritten to MatMul + Add (``gemm_to_matmul``). Convs stay FP32.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = gemm_to_matmul(onnx.load(str(fp32)))
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    with quiet():
        q = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
        q.process()
        q.model.save_model_to_file(str(out), use_external_data_format=False)
    strip_onnx_noise(out)
    return out


def gemm_to_matmul(model):  # onnx.ModelProto -> onnx.ModelProto
    """Rewrite Gemm(A, B, C) with constant B, alpha = beta = 1, transA = 0 into MatMul(A, B') + C.

    B' is B transposed when transB = 1 (torch's Linear layout). Other Gemms are left alone.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        w = w.T if attrs.get("transB", 0) else w
        w_name = node.input[1] + "_matmul"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = node.output[0] + "_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=node.name + "_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_bias"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)
    return model


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _onnx_input_name(path: Path) -> str:
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    return next(v.name for v in graph.input if v.name not in inits)


QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")


def onnx_quantizable_nodes(path: Path) -> list[tuple[str, str]]:
    """(name, op type) of the Conv / MatMul / Gemm nodes static int8 quantizes, in graph order.

    Call it on ``onnx_preprocess``'s output: those are the names ``nodes_to_exclude`` matches.
    """
    import onnx

    return [(n.name, n.op_type) for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZABLE_OPS]


def onnx_int8_layers(path: Path) -> dict[str, bool]:
    """For each Conv / MatMul / Gemm of a (QDQ) model: whether its weight comes through a DequantizeLinear.

    That is what "this layer runs in INT8" means in a QDQ graph; an FP32 layer reads a float initializer.
    """
    import onnx

    graph = onnx.load(str(path)).graph
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: n.input[1] in dq_outputs for n in graph.node if n.op_type in QUANTIZABLE_OPS}


def tflite_int8(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    """ai-edge-quantizer static full-integer int8 (int8 input and output tensors too)."""
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(fp32))
    q.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    sig, in_name = _tflite_signature(fp32)
    with quiet():
        qsv = q.calibrate({sig: [{in_name: x} for x in calib]}, num_threads=2)
        result = q.quantize(qsv, enable_progress_report=False)
    return _export_tflite(result, out)


def tflite_int4(fp32: Path, out: Path) -> Path:
    """ai-edge-quantizer weight-only int4 (channel-wise) on every supported op; float activations."""
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(fp32))
    q.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=4)
    with quiet():
        result = q.quantize(enable_progress_report=False)
    return _export_tflite(result, out)


def _export_tflite(result, out: Path) -> Path:
    out.unlink(missing_ok=True)
    result.export_model(str(out))
    out.chmod(0o644)  # the quantizer writes it executable
    return out


def _tflite_signature(path: Path) -> tuple[str, str]:
    """(signature key, its single input name) of a converted model."""
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(sigs))
    return key, sigs[key]["inputs"][0]
