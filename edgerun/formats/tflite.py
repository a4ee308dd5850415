"""TFLite (LiteRT) model files: IO specs, ops, parameters and precision, read without an edgerun engine.

LiteRT's interpreter is the parser here (plain built-in kernels, one thread, no delegate): it
checks the flatbuffer as it loads it, and gives the tensors' names, shapes, dtypes and
quantization. Only the INT4 tensor type, which the interpreter reports as int8, is read from the
flatbuffer itself, through LiteRT's generated schema module. ``edgerun.engines.litert`` imports
``interpreter_module``, ``tensor_spec`` and ``readable_names`` from here.

Imports ``ai_edge_litert`` (the maintained package, works with numpy 2) and falls back to the old
``tflite_runtime`` where only it is installed (no schema module there: no INT4 detection).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import ArtifactError, EngineError, EngineUnavailable
from edgerun.formats.spec import ModelInfo, Quant, TensorSpec

__all__ = ["interpreter_module", "model_info", "one_line", "open_plain", "readable_names", "tensor_spec"]


def interpreter_module() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            import tflite_runtime.interpreter as interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise EngineUnavailable(
                "LiteRT is not installed: pip install ai-edge-litert "
                "(or tflite-runtime on systems where only it exists)"
            ) from exc
    return interpreter


def one_line(exc: BaseException) -> str:
    """LiteRT's messages span lines (one per check that failed); edgerun's errors are one line."""
    return " ".join(str(exc).split())


def tensor_spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    # A scale that is 0 means "not quantized"; NaN, inf or negative only comes from a corrupt file.
    quant = Quant(float(scale), int(zero_point)) if scale and math.isfinite(scale) and scale > 0 else None
    shape = tuple(int(d) if d >= 0 else None for d in detail["shape"])  # -1: dynamic
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name, quant)


@contextmanager
def readable_names(path: Path) -> Iterator[None]:
    """LiteRT decodes tensor and op names as UTF-8 when they are asked for (``get_input_details``,
    ``get_tensor_details``): a name of other bytes raises UnicodeDecodeError there. The TFLite schema
    declares names as flatbuffer strings, which are UTF-8, so such a file is refused, not patched."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            f"{path}: a tensor or op name in this TFLite model is not UTF-8 text (byte {exc.start} of the name); "
            "expected a flatbuffer whose names are UTF-8 strings, as the TFLite schema requires"
        ) from None


def open_plain(path: Path) -> Any:
    """An allocated interpreter with LiteRT's built-in kernels only (no XNNPACK, no delegate), one thread."""
    mod = interpreter_module()
    try:
        interp = mod.Interpreter(
            model_path=str(path),
            num_threads=1,
            experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interp.allocate_tensors()
    except ValueError as exc:  # LiteRT reports unreadable flatbuffers as ValueError
        raise ArtifactError(f"{path}: LiteRT cannot load this model ({one_line(exc)})") from exc
    except RuntimeError as exc:
        raise EngineError(f"{path}: LiteRT failed to prepare the model ({one_line(exc)})") from exc
    return interp


def model_info(path: Path) -> ModelInfo:
    """What a .tflite file says about itself: IO, ops, parameters by dtype, precision."""
    interp = open_plain(path)
    with readable_names(path):  # names are decoded as they are asked for
        return _info(path, interp)


def _info(path: Path, interp: Any) -> ModelInfo:
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only public-ish way to list ops in LiteRT
    produced = {t for op in ops for t in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    consumed = {t for op in ops for t in op["inputs"] if t >= 0}
    constants = consumed - produced - graph_inputs
    # LiteRT reports INT4 tensors as int8, so only a model with int8 constants can hold any: only
    # then is the flatbuffer schema read (importing it costs ~25 ms of CPU, every fp32 load paid it).
    maybe_int4 = any(index in details and _np_name(details[index]["dtype"]) == "int8" for index in constants)
    int4 = _int4_tensors(path) if maybe_int4 else set()
    dtypes: Counter[str] = Counter()
    for index in constants:
        d = details.get(index)
        if d is not None:
            dtype = "int4" if index in int4 else _np_name(d["dtype"])
            dtypes[dtype] += int(math.prod(int(x) for x in d["shape"]))
    precision = "fp32"
    if dtypes.get("int4"):
        precision = "int4"
    elif dtypes.get("int8") or dtypes.get("uint8"):
        precision = "int8"
    elif dtypes.get("float16", 0) > dtypes.get("float32", 0):
        precision = "fp16"
    return ModelInfo(
        format="tflite",
        precision=precision,
        inputs=tuple(tensor_spec(d) for d in interp.get_input_details()),
        outputs=tuple(tensor_spec(d) for d in interp.get_output_details()),
        parameter_count=sum(dtypes.values()),
        parameter_dtypes=dict(dtypes),
        op_histogram=dict(Counter(op["op_name"] for op in ops).most_common()),
        versions={"tflite_schema": 3},
    )


def _int4_tensors(path: Path) -> set[int]:
    """Indices of the INT4 tensors of the main subgraph, read from the flatbuffer.

    The LiteRT interpreter reports INT4 tensors (ai-edge-quantizer's weight-only int4) as int8;
    the schema's TensorType tells them apart. Empty where the schema module is missing
    (the old tflite_runtime package).
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return set()
    import struct

    try:  # the interpreter has read this file already; a flatbuffer it accepted may still mislead this reader
        model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
        if model.SubgraphsLength() == 0:
            return set()
        graph = model.Subgraphs(0)
        return {i for i in range(graph.TensorsLength()) if graph.Tensors(i).Type() == schema.TensorType.INT4}
    except (IndexError, struct.error, ValueError, TypeError, OverflowError) as exc:
        raise ArtifactError(
            f"{path}: corrupt TFLite flatbuffer ({type(exc).__name__} reading its tensor types)"
        ) from None


def _np_name(dtype: Any) -> str:
    return np.dtype(dtype).name
