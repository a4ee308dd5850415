"""What a model file declares, as the readers in ``edgerun.formats`` return it.

``TensorSpec`` and ``Quant`` describe one input or output; ``ModelInfo`` is everything a model file
says about itself, independent of any manifest. ``edgerun.artifact`` re-exports all three (their
historical home), and the engines build ``TensorSpec`` for their sessions' inputs and outputs.

They are tuples with named fields (``edgerun.formats.frozen.Record``): immutable, fields by name,
the ``repr``, equality and ``_replace`` of the ``NamedTuple`` classes they were, and they unpack
like tuples; but a class costs ~0.01 ms to create against ~0.1-0.2 ms for a ``NamedTuple`` and
~0.57 ms for a frozen dataclass, and every ``edgerun run`` imports this module (issue 13's
start-up goal, tools/bench_startup.py).
"""

from __future__ import annotations

from typing import Any

from edgerun.formats.frozen import Record

__all__ = ["ModelInfo", "Quant", "TensorSpec"]


class Quant(Record):
    """Per-tensor affine quantization: real = scale * (q - zero_point)."""

    __slots__ = ()
    _fields = ("scale", "zero_point")
    scale: float
    zero_point: int

    def __new__(cls, scale: float, zero_point: int) -> Quant:
        return tuple.__new__(cls, (scale, zero_point))


class TensorSpec(Record):
    """One input or output: its name, shape (None for a dynamic dimension), dtype and quantization."""

    __slots__ = ()
    _fields = ("name", "shape", "dtype", "quant")
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quant: Quant | None

    def __new__(cls, name: str, shape: tuple[int | None, ...], dtype: str, quant: Quant | None = None) -> TensorSpec:
        return tuple.__new__(cls, (name, shape, dtype, quant))

    def to_dict(self) -> dict[str, Any]:
        quant = None if self.quant is None else {"scale": self.quant.scale, "zero_point": self.quant.zero_point}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quant": quant}

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        q = "" if self.quant is None else f" (scale={self.quant.scale:.6g}, zero_point={self.quant.zero_point})"
        return f"{self.name}: {self.dtype}[{dims}]{q}"


class ModelInfo(Record):
    """What the model file itself says (independent of any manifest)."""

    __slots__ = ()
    _fields = (
        "format",
        "precision",
        "inputs",
        "outputs",
        "parameter_count",
        "parameter_dtypes",
        "op_histogram",
        "versions",
    )
    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameter_count: int
    parameter_dtypes: dict[str, int]  # dtype -> number of parameters stored in it
    op_histogram: dict[str, int]
    versions: dict[str, int]  # ONNX: ir_version + opsets; TFLite: schema version

    def __new__(
        cls,
        format: str,
        precision: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        parameter_count: int,
        parameter_dtypes: dict[str, int],
        op_histogram: dict[str, int],
        versions: dict[str, int],
    ) -> ModelInfo:
        return tuple.__new__(
            cls, (format, precision, inputs, outputs, parameter_count, parameter_dtypes, op_histogram, versions)
        )
