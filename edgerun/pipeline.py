"""The staged pipeline: pre-process -> infer -> post-process, each stage timed.

Pre- and post-processing are declarative: the manifest lists ops
(docs/manifest.md), ``compile_pre`` / ``compile_post`` turn them into small
frozen op objects once, and the pipeline applies them on every call. Every
call is timed per stage with ``time.perf_counter_ns``; the inference stage
wraps nothing but the engine call, so its time is the engine's time plus a
method call (tools/bench_overhead.py measures that overhead).

Input validation (shape, dtype, finite values) is part of the pre stage: it is
work a deployed application has to do too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from time import perf_counter_ns
from typing import Any

import numpy as np

from edgerun.artifact import Artifact, Quant, TensorSpec
from edgerun.engines import Session
from edgerun.errors import ArtifactError, InputError
from edgerun.schema.limits import MAX_RESIZE_SIDE


@dataclass(frozen=True)
class StageTimes:
    """Wall-clock nanoseconds spent in each stage of one inference."""

    pre_ns: int
    infer_ns: int
    post_ns: int

    @property
    def total_ns(self) -> int:
        return self.pre_ns + self.infer_ns + self.post_ns


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


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


@dataclass(frozen=True)
class Resize:
    size: tuple[int, int]
    method: str = "bilinear"
    layout: str = "HWC"
    _cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        layout = "HW" if x.ndim == 2 else self.layout
        h_ax, w_ax = layout.index("H"), layout.index("W")
        key = (x.shape[h_ax], x.shape[w_ax])
        if key not in self._cache:
            make = _linear_weights if self.method == "bilinear" else _nearest_weights
            self._cache[key] = (make(key[0], self.size[0]), make(key[1], self.size[1]))
        wy, wx = self._cache[key]
        x = x.astype(np.float32, copy=False)
        if layout == "HW":
            return wy @ x @ wx.T
        if layout == "HWC":
            return np.einsum("oh,hwc,pw->opc", wy, x, wx, optimize=True)
        return np.einsum("oh,chw,pw->cop", wy, x, wx, optimize=True)


@dataclass(frozen=True)
class Cast:
    dtype: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype, copy=False)


@dataclass(frozen=True)
class Scale:
    factor: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * np.float32(self.factor)


@dataclass(frozen=True)
class Normalize:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    axis: int = -1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = [1] * x.ndim
        if len(self.mean) > 1:
            shape[self.axis] = len(self.mean)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return (x - mean) / std


@dataclass(frozen=True)
class Layout:
    src: str
    dst: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(x, [self.src.index(c) for c in self.dst]))


@dataclass(frozen=True)
class ExpandDims:
    axis: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.expand_dims(x, self.axis)


@dataclass(frozen=True)
class Quantize:
    quant: Quant
    dtype: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.rint(x / np.float32(self.quant.scale)) + self.quant.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)


# --- post-processing ops --------------------------------------------------------------


@dataclass(frozen=True)
class Dequantize:
    quant: Quant

    def __call__(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.quant.zero_point)) * np.float32(self.quant.scale)


@dataclass(frozen=True)
class Softmax:
    axis: int = -1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float32, copy=False)
        e = np.exp(z - z.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)


@dataclass(frozen=True)
class TopK:
    """Top-k classes of the first batch row; argmax is k=1."""

    k: int
    labels: tuple[str, ...]

    def select(self, x: np.ndarray) -> tuple[Prediction, ...]:
        row = x.reshape(-1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)[0]
        k = min(self.k, row.size)
        # Ties go to the lowest index, as np.argmax does: quantized outputs tie often, and
        # argpartition's arbitrary pick moved the INT8 demo's accuracy (98.67% vs 98.44%).
        # A stable ascending sort of the reversed row, read backwards, orders by value
        # descending and index ascending; no negation, which wraps unsigned integer outputs.
        if k == 1:
            idx = np.array([np.argmax(row)])
        else:
            idx = row.size - 1 - np.argsort(row[::-1], kind="stable")[::-1][:k]
        return tuple(
            Prediction(int(i), self.labels[i] if i < len(self.labels) else str(int(i)), float(row[i])) for i in idx
        )


def _need(op: dict[str, Any], key: str, where: str) -> Any:
    if key not in op:
        raise ArtifactError(f"{where}: op {op.get('op')!r} needs parameter {key!r}; got {op}")
    return op[key]


def _finite(value: Any, key: str, where: str) -> float:
    """A real, finite number. float() alone would take "nan" / "inf" strings (and bools)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ArtifactError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def compile_pre(
    ops: Sequence[dict[str, Any]], model_input: TensorSpec, where: str
) -> list[Callable[[np.ndarray], np.ndarray]]:
    """Turn manifest pre-processing ops into callables (checked once, at load)."""
    out: list[Callable[[np.ndarray], np.ndarray]] = []
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


@dataclass(frozen=True)
class PostOps:
    transforms: tuple[Callable[[np.ndarray], np.ndarray], ...]
    topk: TopK | None


def compile_post(
    ops: Sequence[dict[str, Any]], model_output: TensorSpec, labels: tuple[str, ...], where: str
) -> PostOps:
    transforms: list[Callable[[np.ndarray], np.ndarray]] = []
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


# --- the pipeline ---------------------------------------------------------------------


def _shape_ok(shape: tuple[int, ...], spec: tuple[int | None, ...]) -> bool:
    return len(shape) == len(spec) and all(s is None or s == d for d, s in zip(shape, spec))


def _check_int_range(x: np.ndarray, spec: TensorSpec) -> None:
    """An integer cast must not change a value (int64 300 -> int8 would be 44, uint8 200 -> -56).

    One reduction per side that can overflow (uint8 -> int8 needs only the max), on the raw input."""
    src, dst = np.iinfo(x.dtype), np.iinfo(spec.dtype)
    if x.size == 0:
        return
    too_low = src.min < dst.min and x.min() < dst.min
    if not too_low and not (src.max > dst.max and x.max() > dst.max):
        return
    raise InputError(
        f"input {spec.name!r}: values [{x.min()}, {x.max()}] do not fit {spec.dtype}; expected {x.dtype} "
        f"values within the {spec.dtype} range [{dst.min}, {dst.max}]"
    )


def check_input(x: Any, spec: TensorSpec) -> np.ndarray:
    """Validate one raw input against its spec; cast within the same kind (float64 -> float32),
    never to a value the target dtype cannot hold."""
    if type(x) is not np.ndarray:  # the common case costs one type check; subclasses are looked at below
        if not isinstance(x, np.ndarray):
            raise InputError(f"input {spec.name!r}: expected a numpy array {spec.describe()}, got {type(x).__name__}")
        if isinstance(x, np.ma.MaskedArray):
            # The engine would see the values under the mask, which the caller marked as not data.
            raise InputError(
                f"input {spec.name!r}: a masked array; expected a plain numpy array {spec.describe()} "
                "(fill the masked values first, e.g. x.filled(0), if the model should see them)"
            )
    if not _shape_ok(x.shape, spec.shape):
        raise InputError(f"input {spec.name!r}: expected shape {list(spec.shape)} (null = any), got {list(x.shape)}")
    if x.size == 0:  # a dynamic dim given as 0: a resize would index nothing, and no prediction is of nothing
        raise InputError(f"input {spec.name!r}: shape {list(x.shape)} holds no values; expected at least one")
    if x.dtype != spec.dtype:
        if not np.can_cast(x.dtype, spec.dtype, casting="same_kind"):
            raise InputError(
                f"input {spec.name!r}: expected dtype {spec.dtype} (or one castable to it within its kind), "
                f"got {x.dtype}"
            )
        if x.dtype.kind in "iu" and np.dtype(spec.dtype).kind in "iu" and not np.can_cast(x.dtype, spec.dtype):
            _check_int_range(x, spec)  # narrowing integer casts only: the float path pays nothing
        with np.errstate(over="ignore"):  # float64 1e300 -> float32 inf: reported as non-finite below
            x = x.astype(spec.dtype)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise InputError(
            f"input {spec.name!r}: {bad} NaN/Inf value(s) (as {spec.dtype}: values past its range become inf); "
            f"expected finite {spec.dtype} values"
        )
    return x


class Pipeline:
    """Binds an artifact's declarative pre/post ops to an engine session."""

    def __init__(self, artifact: Artifact, session: Session) -> None:
        _check_io(artifact, session)
        self.artifact = artifact
        self.session = session
        m = artifact.manifest
        where = str(artifact.manifest_path or artifact.path)
        raw = artifact.raw_inputs
        self._raw = raw
        self._pre = compile_pre(m.preprocess if m else (), session.inputs[0], where)
        if self._pre and len(raw) != 1:
            raise ArtifactError(f"{where}: pre-processing needs exactly one raw input, manifest has {len(raw)}")
        self._post = compile_post(m.postprocess if m else (), session.outputs[0], m.labels if m else (), where)
        self._run = session.run
        self._names = [t.name for t in session.outputs]

    def preprocess(self, x: Any) -> list[np.ndarray]:
        """Raw input(s) -> model feeds. ``x`` is one array, or a list/dict of arrays for multi-input models."""
        if isinstance(x, dict):
            missing = [t.name for t in self._raw if t.name not in x]
            if missing:
                raise InputError(f"missing input(s) {missing}; expected {[t.name for t in self._raw]}")
            arrays = [x[t.name] for t in self._raw]
        elif isinstance(x, (list, tuple)):
            arrays = list(x)
        else:
            arrays = [x]
        if len(arrays) != len(self._raw):
            raise InputError(
                f"expected {len(self._raw)} input(s) {[t.describe() for t in self._raw]}, got {len(arrays)}"
            )
        feeds = [check_input(a, spec) for a, spec in zip(arrays, self._raw)]
        if self._pre:
            y = feeds[0]
            for op in self._pre:
                y = op(y)
            feeds = [y]
        return feeds

    def postprocess(self, outs: list[np.ndarray]) -> tuple[dict[str, np.ndarray], tuple[Prediction, ...]]:
        y = outs[0]
        for op in self._post.transforms:
            y = op(y)
        top = self._post.topk.select(y) if self._post.topk else ()
        outputs = dict(zip(self._names, outs))
        outputs[self._names[0]] = y
        return outputs, top

    def __call__(self, x: Any) -> tuple[dict[str, np.ndarray], tuple[Prediction, ...], StageTimes]:
        t0 = perf_counter_ns()
        feeds = self.preprocess(x)
        t1 = perf_counter_ns()
        outs = self._run(feeds)
        t2 = perf_counter_ns()
        outputs, top = self.postprocess(outs)
        t3 = perf_counter_ns()
        return outputs, top, StageTimes(t1 - t0, t2 - t1, t3 - t2)

    def timed_infer(self, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """The inference stage alone, as __call__ times it (for overhead measurement)."""
        t1 = perf_counter_ns()
        outs = self._run(feeds)
        return outs, perf_counter_ns() - t1


def _check_io(artifact: Artifact, session: Session) -> None:
    """The manifest must describe the model the engine actually loaded."""
    where = str(artifact.manifest_path or artifact.path)
    for kind, declared, actual in (
        ("input", artifact.inputs, session.inputs),
        ("output", artifact.outputs, session.outputs),
    ):
        if len(declared) != len(actual):
            raise ArtifactError(f"{where}: manifest lists {len(declared)} {kind}s, the model has {len(actual)}")
        for d, a in zip(declared, actual):
            if d.name != a.name or d.dtype != a.dtype:
                raise ArtifactError(
                    f"{where}: manifest {kind} {d.describe()} does not match the model's {a.describe()}"
                )
    if not session.inputs or not session.outputs:
        raise ArtifactError(f"{where}: the model has no inputs or no outputs")
