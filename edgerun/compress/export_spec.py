"""What a recipe exports and how it is judged: ``[[export]]`` tables and the ``[gate]`` (docs/compress.md).

Frozen, typed configs parsed by ``recipe.load_recipe`` (which re-exports them). No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

_DEFAULT_MODE = {"fp32": "", "fp16": "", "int8": "static", "int4": "weight-only", "mixed": "static"}
SUFFIXES = {"coreml": "mlpackage"}  # a format whose file does not end in its name


@dataclass(frozen=True)
class ExportSpec:
    """One artifact: a step's model in one format and precision."""

    source: str
    # pte: ExecuTorch (XNNPACK-lowered); coreml: an .mlpackage, converted here and measured only on a Mac
    format: Literal["onnx", "tflite", "pte", "coreml"] = "onnx"
    precision: Literal["fp32", "fp16", "int8", "int4", "mixed"] = "fp32"
    mode: Literal["static", "dynamic", "weight-only", ""] = ""  # "" = the precision's default
    max_drop_points: float | None = None  # overrides [gate] for this artifact (and is "mixed"'s target)
    max_drop_vs_teacher_points: float | None = None  # overrides [gate]'s limit against the teacher
    name: str = ""  # file stem; default "<source>-<precision>[-<mode>][-folded]"
    # fold the data's trailing scale / normalize ops into the model (edgerun/compress/fold.py)
    fold_preprocessing: bool = False

    @property
    def resolved_mode(self) -> str:
        if not self.mode and (self.format, self.precision) == ("coreml", "int8"):
            return "weight-only"  # Core ML's int8 is weight quantization (export_coreml.py)
        return self.mode or _DEFAULT_MODE[self.precision]

    @property
    def measurable(self) -> bool:
        """False for Core ML: coremltools cannot run a model off Apple hardware, so no gate judges it."""
        return self.format != "coreml"

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        default = (
            "weight-only" if (self.format, self.precision) == ("coreml", "int8") else _DEFAULT_MODE[self.precision]
        )
        suffix = f"-{self.resolved_mode}" if self.resolved_mode != default else ""
        return f"{self.source}-{self.precision}{suffix}" + ("-folded" if self.fold_preprocessing else "")

    @property
    def file_name(self) -> str:
        return f"{self.stem}.{SUFFIXES.get(self.format, self.format)}"


@dataclass(frozen=True)
class GateConfig:
    max_drop_points: float = 1.0  # vs the source model's FP32 ONNX export, in accuracy points
    max_drop_vs_teacher_points: float = 1.0  # vs the teacher's FP32 ONNX export, in accuracy points
    teacher: str = ""  # the step every export is compared with; "" = the recipe's first step
    min_accuracy: float = 0.0  # absolute floor on top-1 (0..1)
    reference_set: Literal["test"] = "test"


# (format, precision, mode) combinations the toolkit builds; docs/compress.md lists them.
SUPPORTED_EXPORTS = (
    ("onnx", "fp32", ""),
    ("onnx", "int8", "static"),
    ("onnx", "int8", "dynamic"),
    ("onnx", "int4", "weight-only"),
    ("onnx", "mixed", "static"),  # INT8 QDQ with the most sensitive layers kept FP32
    ("tflite", "fp32", ""),
    ("tflite", "int8", "static"),
    ("tflite", "int4", "weight-only"),
    ("pte", "fp32", ""),  # ExecuTorch, XNNPACK-lowered (edgerun/compress/export_executorch.py)
    ("pte", "int8", "static"),  # PT2E XNNPACKQuantizer: per-channel weights, calibrated activations
    ("coreml", "fp32", ""),  # coremltools ML program (edgerun/compress/export_coreml.py): not measured off macOS
    ("coreml", "fp16", ""),
    ("coreml", "int8", "weight-only"),  # linear_quantize_weights, per-channel symmetric; activations float
)
