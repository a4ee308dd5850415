"""What a model file declares, as the readers in ``edgerun.formats`` return it.

``TensorSpec`` and ``Quant`` describe one input or output; ``ModelInfo`` is everything a model file
says about itself, independent of any manifest. ``edgerun.artifact`` re-exports all three (their
historical home), and the engines build ``TensorSpec`` for their sessions' inputs and outputs.

They are ``NamedTuple`` classes, not frozen dataclasses: as immutable, fields by name, the same
``repr`` and equality, but a class costs ~0.1 ms to create against ~0.57 ms for a frozen dataclass
(six methods compiled from source), and every ``edgerun run`` imports this module (issue 13's
start-up goal, tools/bench_startup.py). Unlike a dataclass they also unpack like tuples; nothing
here relies on that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ModelInfo", "Quant", "TensorSpec"]


class Quant(NamedTuple):
    """Per-tensor affine quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


class TensorSpec(NamedTuple):
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


class ModelInfo(NamedTuple):
    """What the model file itself says (independent of any manifest)."""

    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameter_count: int
    parameter_dtypes: dict[str, int]  # dtype -> number of parameters stored in it
    op_histogram: dict[str, int]
    versions: dict[str, int]  # ONNX: ir_version + opsets; TFLite: schema version
