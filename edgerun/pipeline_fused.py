"""Pre/post-processing op chains compiled into the fewest array passes.

The ops of edgerun.pipeline_ops are the reference: each applied alone, one fresh array per op.
Applied that way the digits demo's six pre ops cost ~20 us around a ~40-500 us inference, mostly
numpy's per-call dispatch and temporaries, not arithmetic. ``FusedPre`` plans a chain once per
input shape and dtype (a small cache) and then runs:

- index ops (``expand_dims``, ``layout``) as views, applied to the source; a transpose is
  materialised only by the pass that writes the result;
- every run of ``cast`` (to float32/float64), ``scale`` and ``normalize`` as one affine pass
  ``y = x * a + b`` (a, b per channel, folded in float64 at plan time), written into a fresh
  array or the caller's buffer, in place where the array is already ours;
- ``quantize`` folded into that affine: ``clip(rint(x * a / s + (b / s + zp)))``;
- ``resize`` as before (two small matmuls per call with cached weight matrices).

Tolerance against op-by-op evaluation (tests/test_pipeline_fused.py holds every op combination
the manifest schema allows to it, on seeded random inputs): the affine differs from
``((x * f) - mean) / std`` by rounding only: |fused - reference| <= 8 eps (|x a| + |b|), eps of
the result's float type; a quantized result by at most one code (a value within that rounding
of a half step may round the other way). Everything else (cast alone, index ops, resize,
dequantize, softmax) is bit-identical.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgerun.pipeline_ops import Cast, Dequantize, ExpandDims, Layout, Normalize, Quantize, Resize, Scale, Softmax

PLAN_CACHE = 8  # input shapes remembered per chain (a model with dynamic dims may see many)

Plan = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class _Affine:
    """A pending ``x * a + b`` in the coordinates of the current array (a, b broadcastable, float64)."""

    def __init__(self, ndim: int) -> None:
        self.a: np.ndarray = np.ones((1,) * ndim)
        self.b: np.ndarray = np.zeros((1,) * ndim)
        self.identity = True

    def scale(self, f: float) -> None:
        self.a, self.b, self.identity = self.a * f, self.b * f, False

    def normalize(self, op: Normalize, ndim: int) -> None:
        shape = [1] * ndim
        if len(op.mean) > 1:
            shape[op.axis] = len(op.mean)
        mean = np.asarray(op.mean, dtype=np.float32).astype(np.float64).reshape(shape)
        std = np.asarray(op.std, dtype=np.float32).astype(np.float64).reshape(shape)
        self.a, self.b, self.identity = self.a / std, (self.b - mean) / std, False

    def view(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.a, self.b = fn(self.a), fn(self.b)


def _view_step(op: Any, shape_out: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(op, Layout):
        perm = tuple(op.src.index(c) for c in op.dst)
        return lambda v: v.transpose(perm)
    return lambda v: v.reshape(shape_out)  # expand_dims inserts a 1: a reshape of any view is a view


def _segment(
    views: list[Callable[[np.ndarray], np.ndarray]],
    aff: _Affine,
    dtype: np.dtype,
    shape: tuple[int, ...],
    quant: Quantize | None,
) -> Callable[[np.ndarray, bool, np.ndarray | None], np.ndarray]:
    """One pass: the source through its views, the affine (and quantize), into a fresh array or ``out``."""
    a, b = aff.a.astype(dtype), aff.b.astype(dtype)
    unit_a = a.size == 1 and bool(a.reshape(-1)[0] == 1)
    no_b = not b.any()
    if quant is not None:
        info, s = np.iinfo(quant.dtype), float(np.float32(quant.quant.scale))
        a, b = (aff.a / s).astype(dtype), (aff.b / s + quant.quant.zero_point).astype(dtype)
        lo, hi, qdtype = info.min, info.max, np.dtype(quant.dtype)

    def run(x: np.ndarray, owned: bool, out: np.ndarray | None) -> np.ndarray:
        v = x
        for fn in views:
            v = fn(v)
        if quant is not None:
            t = np.multiply(v, a, dtype=dtype)
            np.add(t, b, out=t)
            np.rint(t, out=t)
            np.clip(t, lo, hi, out=t)
            if out is not None and out.dtype == qdtype and out.shape == shape:
                np.copyto(out, t, casting="unsafe")
                return out
            return t.astype(qdtype)
        if out is None or out.shape != shape or out.dtype != dtype:
            if aff.identity:  # a cast and views alone: what the reference returns (a view where it does)
                return v.astype(dtype, copy=False) if not views else np.ascontiguousarray(v, dtype)
            # in place where the array is already ours (a fresh result of an earlier step)
            out = v if owned and v.dtype == dtype and v.flags.c_contiguous else np.empty(shape, dtype)
        if aff.identity:
            np.copyto(out, v, casting="unsafe")
        elif unit_a:
            np.add(v, b, out=out, dtype=dtype)
        else:
            np.multiply(v, a, out=out, dtype=dtype)
            if not no_b:
                np.add(out, b, out=out)
        return out

    return run


def _fusable_cast(before: np.dtype, after: np.dtype) -> bool:
    """A cast the affine may absorb: to float32/float64 without losing a value."""
    return after in (np.float32, np.float64) and np.can_cast(before, after, "safe")


def _barrier(ops: Sequence[Any], shape: tuple[int, ...], dtype: np.dtype) -> int:
    """How many leading ops run one by one: those up to the last integer cast or quantize that is not
    the chain's end. Rounding to an integer there would turn the fused affine's last-bit differences
    into whole codes that later ops then scale; done op by op, the prefix is bit-identical."""
    probe, cut = np.zeros(shape, dtype), 0
    for i, op in enumerate(ops):
        probe = op(probe)
        if (isinstance(op, Cast) and probe.dtype.kind != "f") or (isinstance(op, Quantize) and i < len(ops) - 1):
            cut = i + 1
    return cut


def plan_pre(ops: Sequence[Any], shape: tuple[int, ...], dtype: np.dtype) -> Plan:
    """Compile ``ops`` for inputs of this shape and dtype (the reference ops run once on zeros for the shapes)."""
    cut = _barrier(ops, shape, dtype)
    if cut:
        head, tail = tuple(ops[:cut]), ops[cut:]
        probe = np.zeros(shape, dtype)
        for op in head:
            probe = op(probe)
        rest = plan_pre(tail, probe.shape, probe.dtype) if tail else None

        def run_cut(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            for op in head:
                x = op(x)
            return rest(x, out) if rest is not None else x

        return run_cut
    probe = np.zeros(shape, dtype)
    steps: list[Callable[[np.ndarray, bool, np.ndarray | None], np.ndarray]] = []
    views: list[Callable[[np.ndarray], np.ndarray]] = []
    aff = _Affine(probe.ndim)
    pending = False  # a segment (views and/or affine) waits to be written

    def flush(dtype: np.dtype, shape: tuple[int, ...], ndim_next: int, quant: Quantize | None = None) -> None:
        nonlocal views, aff, pending
        if pending or quant is not None:
            steps.append(_segment(views, aff, dtype, shape, quant))
        views, aff, pending = [], _Affine(ndim_next), False

    for op in ops:
        before, probe = probe, op(probe)
        if isinstance(op, (ExpandDims, Layout)):
            views.append(_view_step(op, probe.shape))
            aff.view(functools.partial(_apply_view, op))
            pending = True
        elif isinstance(op, (Scale, Normalize)) or (isinstance(op, Cast) and _fusable_cast(before.dtype, probe.dtype)):
            if isinstance(op, Scale):
                aff.scale(float(np.float32(op.factor)))
            elif isinstance(op, Normalize):
                aff.normalize(op, before.ndim)
            pending = True
        elif isinstance(op, Quantize):  # the reference divides in the input's float type, then rounds
            flush(np.result_type(before.dtype, np.float32), before.shape, probe.ndim, op)
        else:  # resize, any other cast: the reference op on the segment's result
            flush(before.dtype, before.shape, probe.ndim)
            steps.append(functools.partial(_reference_step, op))
    flush(probe.dtype, probe.shape, probe.ndim)

    def run(x0: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        x, owned, last = x0, False, len(steps) - 1
        for i, step in enumerate(steps):
            x = step(x, owned, out if i == last else None)
            owned = not np.may_share_memory(x, x0)
        return x

    return run


def _reference_step(op: Any, x: np.ndarray, owned: bool, out: np.ndarray | None) -> np.ndarray:
    return op(x)


def _apply_view(op: Any, arr: np.ndarray) -> np.ndarray:
    """An index op on the affine's coefficient arrays (size-1 axes where they broadcast)."""
    if isinstance(op, Layout):
        return arr.transpose([op.src.index(c) for c in op.dst])
    return np.expand_dims(arr, op.axis)


class FusedPre:
    """A pre-processing chain, planned per input shape and dtype; ``out`` receives the result if it fits."""

    def __init__(self, ops: Sequence[Any]) -> None:
        self.ops = tuple(ops)
        self._plans: dict[tuple[tuple[int, ...], np.dtype], Plan] = {}

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        key = (x.shape, x.dtype)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE:
                self._plans.clear()
            plan = self._plans[key] = plan_pre(self.ops, x.shape, x.dtype)
        return plan(x, out)


def fuse_post(transforms: Sequence[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """Dequantize / softmax with one fresh array, the rest in place: bit-identical to the ops."""
    steps = tuple(transforms)
    if not steps:
        return lambda y: y

    def run(y: np.ndarray) -> np.ndarray:
        owned = False
        for op in steps:
            if isinstance(op, Dequantize):
                z = y.astype(np.float32)
                np.subtract(z, np.float32(op.quant.zero_point), out=z)
                np.multiply(z, np.float32(op.quant.scale), out=z)
                y, owned = z, True
            elif isinstance(op, Softmax):
                z = y.astype(np.float32, copy=False)
                # the ufuncs' reduce directly: ndarray.max / .sum add a Python-level wrapper per call
                m = np.maximum.reduce(z, axis=op.axis, keepdims=True)
                e = np.subtract(z, m, out=z if owned or z is not y else None)
                np.exp(e, out=e)
                np.divide(e, np.add.reduce(e, axis=op.axis, keepdims=True), out=e)
                y, owned = e, True
            else:
                y, owned = op(y), False
        return y

    return run


__all__ = ["FusedPre", "fuse_post", "plan_pre", "Resize"]
