"""What a model file declares, as the readers in ``edgerun.formats`` return it.

``TensorSpec`` and ``Quant`` describe one input or output; ``ModelInfo`` is everything a model file
says about itself, independent of any manifest. ``edgerun.artifact`` re-exports all three (their
historical home), and the engines build ``TensorSpec`` for their sessions' inputs and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelInfo", "Quant", "TensorSpec"]


@dataclass(frozen=True)
class Quant:
    """Per-tensor affine quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quant: Quant | None = None

    def to_dict(self) -> dict[str, Any]:
        quant = None if self.quant is None else {"scale": self.quant.scale, "zero_point": self.quant.zero_point}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quant": quant}

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        q = "" if self.quant is None else f" (scale={self.quant.scale:.6g}, zero_point={self.quant.zero_point})"
        return f"{self.name}: {self.dtype}[{dims}]{q}"


@dataclass(frozen=True)
class ModelInfo:
    """What the model file itself says (independent of any manifest)."""

    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameter_count: int
    parameter_dtypes: dict[str, int]  # dtype -> number of parameters stored in it
    op_histogram: dict[str, int]
    versions: dict[str, int]  # ONNX: ir_version + opsets; TFLite: schema version
