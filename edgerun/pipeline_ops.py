"""The manifest's pre/post-processing ops, one small frozen object per op (docs/manifest.md).

The ops are tuples with named fields (``edgerun.formats.frozen.Record``, as the ``NamedTuple``
classes they were): immutable, but a class costs ~0.01 ms to create against ~0.1-0.2 ms for a
``NamedTuple`` and ~0.44 ms for a frozen dataclass (whose generated methods are each compiled from
source), and `edgerun run` creates all of them at every start (issue 13's start-up goal;
tools/bench_startup.py). Two ops of different kinds are never compared.

``compile_pre`` / ``compile_post`` check the ops once, at load, and return these objects. Each
op is the reference implementation of its documented effect, applied one op at a time;
edgerun.pipeline_fused compiles a chain of them into fewer array passes for the hot path, and
the tests hold the fused chain to these (tests/test_pipeline_fused.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, Protocol

import numpy as np

from edgerun.artifact import Quant, TensorSpec
from edgerun.errors import ArtifactError
from edgerun.formats.frozen import Frozen, Record
from edgerun.formats.limits import MAX_RESIZE_SIDE


class ArrayOp(Protocol):
    """What every op is: array in, array out. (A protocol: what mypy checks each op's ``__call__``
    against.)"""

    def __call__(self, x: np.ndarray, /) -> np.ndarray: ...


class Prediction(Frozen):  # not a NamedTuple: its field "index" would hide tuple.index
    """One class of a top-k: its index in the output row, its label, its score. Immutable."""

    __slots__ = ("index", "label", "score")
    index: int
    label: str
    score: float

    def __init__(self, index: int, label: str, score: float) -> None:
        object.__setattr__(self, "index", index)  # three calls, not _set_fields' loop: made per result
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "score", score)


# --- pre-processing ops ---------------------------------------------------------------


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of bilinear weights with half-pixel centres (OpenCV INTER_LINEAR,
    torch interpolate(align_corners=False)), so a 2-D resize is two small matmuls."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(w, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), hi), frac)
    return w.astype(np.float32)


def _nearest_weights(n_in: int, n_out: int) -> np.ndarray:
    src = np.minimum(np.floor(np.arange(n_out) * (n_in / n_out)).astype(np.int64), n_in - 1)
    w = np.zeros((n_out, n_in), dtype=np.float32)
    w[np.arange(n_out), src] = 1.0
    return w


@functools.lru_cache(maxsize=16)
def _resize_weights(method: str, n_in: int, n_out: int) -> np.ndarray:
    """One side's weight matrix, made once per (method, input side, output side) in this process;
    read-only, since every Resize with these sides shares it."""
    w = (_linear_weights if method == "bilinear" else _nearest_weights)(n_in, n_out)
    w.setflags(write=False)
    return w


class Resize(Record):
    __slots__ = ()
    _fields = ("size", "method", "layout")
    size: tuple[int, int]
    method: str
    layout: str

    def __new__(cls, size: tuple[int, int], method: str = "bilinear", layout: str = "HWC") -> Resize:
        return tuple.__new__(cls, (size, method, layout))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        layout = "HW" if x.ndim == 2 else self.layout
        h_ax, w_ax = layout.index("H"), layout.index("W")
        wy = _resize_weights(self.method, x.shape[h_ax], self.size[0])
        wx = _resize_weights(self.method, x.shape[w_ax], self.size[1])
        x = x.astype(np.float32, copy=False)
        if layout == "HW":
            return wy @ x @ wx.T
        if layout == "HWC":
            return np.einsum("oh,hwc,pw->opc", wy, x, wx, optimize=True)
        return np.einsum("oh,chw,pw->cop", wy, x, wx, optimize=True)


class Cast(Record):
    __slots__ = ()
    _fields = ("dtype",)
    dtype: str

    def __new__(cls, dtype: str) -> Cast:
        return tuple.__new__(cls, (dtype,))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype, copy=False)


class Scale(Record):
    __slots__ = ()
    _fields = ("factor",)
    factor: float

    def __new__(cls, factor: float) -> Scale:
        return tuple.__new__(cls, (factor,))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * np.float32(self.factor)


class Normalize(Record):
    __slots__ = ()
    _fields = ("mean", "std", "axis")
    mean: tuple[float, ...]
    std: tuple[float, ...]
    axis: int

    def __new__(cls, mean: tuple[float, ...], std: tuple[float, ...], axis: int = -1) -> Normalize:
        return tuple.__new__(cls, (mean, std, axis))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = [1] * x.ndim
        if len(self.mean) > 1:
            shape[self.axis] = len(self.mean)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return (x - mean) / std


class Layout(Record):
    __slots__ = ()
    _fields = ("src", "dst")
    src: str
    dst: str

    def __new__(cls, src: str, dst: str) -> Layout:
        return tuple.__new__(cls, (src, dst))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(x, [self.src.index(c) for c in self.dst]))


class ExpandDims(Record):
    __slots__ = ()
    _fields = ("axis",)
    axis: int

    def __new__(cls, axis: int) -> ExpandDims:
        return tuple.__new__(cls, (axis,))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.expand_dims(x, self.axis)


class Quantize(Record):
    __slots__ = ()
    _fields = ("quant", "dtype")
    quant: Quant
    dtype: str

    def __new__(cls, quant: Quant, dtype: str) -> Quantize:
        return tuple.__new__(cls, (quant, dtype))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.rint(x / np.float32(self.quant.scale)) + self.quant.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)


# --- post-processing ops --------------------------------------------------------------


class Dequantize(Record):
    __slots__ = ()
    _fields = ("quant",)
    quant: Quant

    def __new__(cls, quant: Quant) -> Dequantize:
        return tuple.__new__(cls, (quant,))

    def __call__(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.quant.zero_point)) * np.float32(self.quant.scale)


class Softmax(Record):
    __slots__ = ()
    _fields = ("axis",)
    axis: int

    def __new__(cls, axis: int = -1) -> Softmax:
        return tuple.__new__(cls, (axis,))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float32, copy=False)
        e = np.exp(z - z.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)


_SMALL_ROW = 256  # up to this many scores, top-k is cheaper in Python than through numpy's dispatch


class TopK(Record):
    """Top-k classes of the first batch row; argmax is k=1."""

    __slots__ = ()
    _fields = ("k", "labels")
    k: int
    labels: tuple[str, ...]

    def __new__(cls, k: int, labels: tuple[str, ...]) -> TopK:
        return tuple.__new__(cls, (k, labels))

    def select(self, x: np.ndarray) -> tuple[Prediction, ...]:
        row = x.reshape(-1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)[0]
        k = min(self.k, row.size)
        # Ties go to the lowest index, as np.argmax does: quantized outputs tie often, and
        # argpartition's arbitrary pick moved the INT8 demo's accuracy (98.67% vs 98.44%).
        # A stable ascending sort of the reversed row, read backwards, orders by value
        # descending and index ascending; no negation, which wraps unsigned integer outputs.
        labels = self.labels
        if row.size <= _SMALL_ROW:
            # A short row (class scores) in Python: sorted(reverse=True) is stable, so equal values
            # keep index order, the same order as below; NaN compares false, so such rows go below.
            vals = row.tolist()
            total = sum(vals)
            if total == total:  # False when a NaN is in the row (or +inf and -inf are: numpy orders those)
                if k == 1:
                    top = [vals.index(max(vals))]
                else:
                    top = sorted(range(len(vals)), key=vals.__getitem__, reverse=True)[:k]
                return tuple(Prediction(i, labels[i] if i < len(labels) else str(i), float(vals[i])) for i in top)
        if k == 1:
            idx = np.array([np.argmax(row)])
        else:
            idx = row.size - 1 - np.argsort(row[::-1], kind="stable")[::-1][:k]
        return tuple(Prediction(int(i), labels[i] if i < len(labels) else str(int(i)), float(row[i])) for i in idx)


def _need(op: dict[str, Any], key: str, where: str) -> Any:
    if key not in op:
        raise ArtifactError(f"{where}: op {op.get('op')!r} needs parameter {key!r}; got {op}")
    return op[key]


def _finite(value: Any, key: str, where: str) -> float:
    """A real, finite number. float() alone would take "nan" / "inf" strings (and bools)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ArtifactError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def compile_pre(ops: Sequence[dict[str, Any]], model_input: TensorSpec, where: str) -> list[ArrayOp]:
    """Turn manifest pre-processing ops into callables (checked once, at load)."""
    out: list[ArrayOp] = []
    for op in ops:
        name = op.get("op")
        if name == "cast":
            out.append(Cast(str(_need(op, "dtype", where))))
        elif name == "resize":
            size = _need(op, "size", where)
            if not (
                isinstance(size, (list, tuple))
                and len(size) == 2
                and all(type(v) is int and 1 <= v <= MAX_RESIZE_SIDE for v in size)
            ):
                # Checked here too (not only by the manifest schema): ops can be compiled directly, and a
                # 1e9 x 1e9 target would allocate its weight matrices on the first call.
                raise ArtifactError(
                    f"{where}: resize size must be [H, W], integers 1..{MAX_RESIZE_SIDE}; got {str(size)[:80]}"
                )
            h, w = size
            method = op.get("method", "bilinear")
            if method not in ("bilinear", "nearest"):
                raise ArtifactError(f"{where}: resize method must be bilinear or nearest, got {method!r}")
            out.append(Resize((h, w), method, op.get("layout", "HWC")))
        elif name == "scale":
            out.append(Scale(_finite(_need(op, "factor", where), "factor", where)))
        elif name == "normalize":
            mean = tuple(_finite(v, "mean", where) for v in _need(op, "mean", where))
            std = tuple(_finite(v, "std", where) for v in _need(op, "std", where))
            if len(mean) != len(std) or any(s == 0 for s in std):
                raise ArtifactError(f"{where}: normalize needs equal-length mean/std with non-zero std")
            out.append(Normalize(mean, std, int(op.get("axis", -1))))
        elif name == "layout":
            src, dst = str(_need(op, "from", where)), str(_need(op, "to", where))
            if sorted(src) != sorted(dst):
                raise ArtifactError(f"{where}: layout {src!r} -> {dst!r} is not a permutation")
            out.append(Layout(src, dst))
        elif name == "expand_dims":
            out.append(ExpandDims(int(_need(op, "axis", where))))
        elif name == "quantize":
            if model_input.quant is None or not np.issubdtype(np.dtype(model_input.dtype), np.integer):
                raise ArtifactError(
                    f"{where}: quantize needs an integer model input with scale/zero_point, "
                    f"but input {model_input.describe()}"
                )
            out.append(Quantize(model_input.quant, model_input.dtype))
        else:
            raise ArtifactError(f"{where}: unknown pre-processing op {name!r}")
    return out


class PostOps(Record):
    __slots__ = ()
    _fields = ("transforms", "topk")
    transforms: tuple[ArrayOp, ...]
    topk: TopK | None

    def __new__(cls, transforms: tuple[ArrayOp, ...], topk: TopK | None) -> PostOps:
        return tuple.__new__(cls, (transforms, topk))


def compile_post(
    ops: Sequence[dict[str, Any]], model_output: TensorSpec, labels: tuple[str, ...], where: str
) -> PostOps:
    transforms: list[ArrayOp] = []
    topk = None
    for op in ops:
        name = op.get("op")
        if topk is not None:
            raise ArtifactError(f"{where}: {name!r} after topk/argmax; they must come last")
        if name == "dequantize":
            if model_output.quant is None:
                raise ArtifactError(
                    f"{where}: dequantize needs output scale/zero_point, output {model_output.describe()}"
                )
            transforms.append(Dequantize(model_output.quant))
        elif name == "softmax":
            transforms.append(Softmax(int(op.get("axis", -1))))
        elif name in ("argmax", "topk"):
            topk = TopK(1 if name == "argmax" else int(_need(op, "k", where)), labels)
        else:
            raise ArtifactError(f"{where}: unknown post-processing op {name!r}")
    return PostOps(tuple(transforms), topk)
