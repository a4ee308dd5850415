"""The compiled pre/post chains (edgerun.pipeline_fused) against op-by-op reference evaluation.

Property style, seeded: random chains over every pre-processing op the manifest schema allows
(cast, resize, scale, normalize, layout, expand_dims, quantize), every ordered pair of op kinds
and random longer chains, on random inputs of several dtypes and shapes. The tolerance is the one
edgerun/pipeline_fused.py states: bit-identical except the fused affine, which may differ by
rounding, |fused - reference| <= 8 eps (|x a| + |b|) (bounded here by running the chain on
magnitudes: |x|, |factor|, |mean|, |std|), and a final quantize, which may differ by one code.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from edgerun.artifact import Quant, TensorSpec
from edgerun.pipeline_fused import FusedPre, fuse_post
from edgerun.pipeline_ops import Cast, Dequantize, Normalize, Quantize, Scale, Softmax, compile_pre

PRE_KINDS = ("cast", "resize", "scale", "normalize", "layout", "expand_dims", "quantize")
CAST_DTYPES = ("float32", "float64", "float16", "int32", "uint8", "int8")
INPUT_DTYPES = ("float32", "float64", "uint8", "int16")
QUANT_DTYPES = ("int8", "uint8", "int16")
LETTERS = "NCHWDT"


def _random_op(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any] | None:
    """One manifest op of ``kind`` valid for an input of ``shape``, or None where none is."""
    ndim = len(shape)
    if kind == "cast":
        return {"op": "cast", "dtype": str(rng.choice(CAST_DTYPES))}
    if kind == "resize":
        if ndim not in (2, 3):
            return None
        size = [int(v) for v in rng.integers(1, 13, size=2)]
        layout = "HW" if ndim == 2 else str(rng.choice(["HWC", "CHW"]))
        return {"op": "resize", "size": size, "method": str(rng.choice(["bilinear", "nearest"])), "layout": layout}
    if kind == "scale":
        return {"op": "scale", "factor": float(rng.choice([0.0, 1.0, -1.0, 1 / 255, 0.0625, rng.normal() * 10]))}
    if kind == "normalize":
        axis = int(rng.integers(-ndim, ndim)) if ndim else -1
        n = 1 if ndim == 0 or rng.random() < 0.4 else shape[axis]
        std = rng.uniform(0.05, 3, size=n) * rng.choice([-1, 1], size=n)
        return {"op": "normalize", "mean": rng.normal(size=n).tolist(), "std": std.tolist(), "axis": axis}
    if kind == "layout":
        if ndim == 0:
            return None
        src = "".join(rng.permutation(list(LETTERS[:ndim])))
        return {"op": "layout", "from": src, "to": "".join(rng.permutation(list(src)))}
    if kind == "expand_dims":
        return None if ndim >= 5 else {"op": "expand_dims", "axis": int(rng.integers(-ndim - 1, ndim + 1))}
    return {"op": "quantize"}


def _chain(kinds: tuple[str, ...], shape: tuple[int, ...], dtype: str, spec: TensorSpec, rng: np.random.Generator):
    """Compiled reference ops for ``kinds`` (skipping kinds that do not fit the shape they meet)."""
    ops: list[Any] = []
    x = np.zeros(shape, dtype)
    for kind in kinds:
        op = _random_op(kind, x.shape, rng)
        if op is None:
            continue
        (compiled,) = compile_pre([op], spec, "test")
        x = compiled(x)
        ops.append(compiled)
    return ops


def _input(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return (rng.normal(size=shape) * rng.choice([1.0, 100.0])).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True).astype(dtype)


def _magnitude_ops(ops: list[Any]) -> list[Any]:
    """The chain on magnitudes: an elementwise bound on |x a| + |b| for each affine the fused plan makes."""
    out: list[Any] = []
    for op in ops:
        if isinstance(op, Scale):
            out.append(Scale(abs(op.factor)))
        elif isinstance(op, Normalize):
            out.append(Normalize(tuple(-abs(m) for m in op.mean), tuple(abs(s) for s in op.std), op.axis))
        elif isinstance(op, Quantize):
            out.append(Scale(1 / op.quant.scale))
        elif isinstance(op, Cast):
            out.append(Cast("float64"))
        else:
            out.append(op)
    return out


def _check(ops: list[Any], x: np.ndarray) -> None:
    ref = x
    for op in ops:
        ref = op(ref)
    got = FusedPre(ops)(x)
    assert got.shape == ref.shape and got.dtype == ref.dtype, (ops, got.shape, ref.shape, got.dtype, ref.dtype)
    if not ops or np.array_equal(got, ref, equal_nan=True):
        return
    if isinstance(ops[-1], Quantize):
        # One code apart, and only where the value before rounding lies within the affine's
        # rounding bound of a half step (where round-half-to-even may go either way).
        q = ops[-1].quant
        before = x
        for op in ops[:-1]:
            before = op(before)
        steps = before.astype(np.float64) / np.float32(q.scale) + q.zero_point
        slack = _bound(ops[:-1], x, before) / np.float32(q.scale) + 8 * np.finfo(np.float32).eps * np.abs(steps)
        differs = got != ref
        assert np.abs(got.astype(np.int64) - ref.astype(np.int64)).max() <= 1, ops
        to_half = np.abs(steps - np.floor(steps) - 0.5)
        assert np.all(to_half[differs] <= slack[differs] + 1e-12), ops
        return
    assert ref.dtype.kind == "f", f"an integer result differs: {ops}"
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = _bound(ops, x, ref) + np.finfo(ref.dtype).tiny
    assert np.all(diff <= bound), (ops, float(diff.max()), float(bound.reshape(-1)[np.argmax(diff)]))


def _bound(ops: list[Any], x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """8 eps (|x a| + |b|) elementwise, for the part of ``ops`` the plan fuses."""
    if not ops:
        return np.zeros(ref.shape)
    # Up to the last rounding to integers (an integer cast, a quantize before the end) the plan runs
    # op by op; the envelope starts from that exact intermediate.
    probe, cut = x, 0
    for i, op in enumerate(ops):
        probe = op(probe)
        if probe.dtype.kind != "f" and isinstance(op, (Cast, Quantize)):
            cut = i + 1
    start = x
    for op in ops[:cut]:
        start = op(start)
    # One rounding per op: eps of the narrowest float type the rest passes through.
    probe, eps = start, np.finfo(ref.dtype).eps if ref.dtype.kind == "f" else np.finfo(np.float32).eps
    for op in ops[cut:]:
        probe = op(probe)
        if probe.dtype.kind == "f":
            eps = max(eps, np.finfo(probe.dtype).eps)
    env = np.abs(start.astype(np.float64))
    for op in _magnitude_ops(ops[cut:]):
        env = op(env).astype(np.float64)
    return 8 * eps * np.abs(env)


def _spec(rng: np.random.Generator) -> TensorSpec:
    dtype = str(rng.choice(QUANT_DTYPES))
    return TensorSpec("model_in", (None,), dtype, Quant(float(rng.uniform(0.001, 0.2)), int(rng.integers(-20, 21))))


SHAPES = [(7,), (5, 6), (4, 5, 3), (2, 3, 4, 5)]


@pytest.mark.parametrize("pair", list(itertools.product(PRE_KINDS, repeat=2)), ids="-".join)
def test_every_ordered_pair_of_ops_matches_the_reference(pair: tuple[str, str]) -> None:
    rng = np.random.default_rng(PRE_KINDS.index(pair[0]) * 7 + PRE_KINDS.index(pair[1]))
    for shape, dtype in itertools.product(SHAPES, INPUT_DTYPES):
        spec = _spec(rng)
        ops = _chain(pair, shape, dtype, spec, rng)
        _check(ops, _input(shape, dtype, rng))


@pytest.mark.parametrize("seed", range(40))
def test_random_chains_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    for _ in range(10):
        kinds = tuple(rng.choice(PRE_KINDS, size=int(rng.integers(1, 8))))
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        dtype = str(rng.choice(INPUT_DTYPES))
        ops = _chain(kinds, shape, dtype, _spec(rng), rng)
        _check(ops, _input(shape, dtype, rng))


def test_the_demo_chain_is_one_pass_after_the_resize_and_reuses_its_plan() -> None:
    spec = TensorSpec("in", (1, 1, 64, 64), "int8", Quant(0.012, -50))
    manifest = [
        {"op": "cast", "dtype": "float32"},
        {"op": "resize", "size": [64, 64], "layout": "HW"},
        {"op": "scale", "factor": 0.0625},
        {"op": "normalize", "mean": [0.3052], "std": [0.3247]},
        {"op": "expand_dims", "axis": 0},
        {"op": "expand_dims", "axis": 0},
        {"op": "quantize"},
    ]
    fused = FusedPre(compile_pre(manifest, spec, "m.json"))
    x = np.random.default_rng(0).uniform(0, 16, (8, 8)).astype(np.float32)
    before = x.copy()
    first = fused(x)
    assert first.shape == (1, 1, 64, 64) and first.dtype == np.int8
    assert np.array_equal(x, before)  # the caller's array is never written
    assert len(fused._plans) == 1 and np.array_equal(fused(x), first)
    out = np.empty((1, 1, 64, 64), np.int8)
    assert fused(x, out) is out and np.array_equal(out, first)  # an engine's input buffer takes the result


@pytest.mark.parametrize("seed", range(10))
def test_post_chain_is_bit_identical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = Quant(float(rng.uniform(0.001, 0.5)), int(rng.integers(-128, 128)))
    codes = rng.integers(-128, 128, size=(2, 10)).astype(np.int8)
    logits = (rng.normal(size=(3, 7)) * 20).astype(np.float32)
    for ops, y in (
        ([Dequantize(q), Softmax()], codes),
        ([Dequantize(q)], codes),
        ([Softmax(0)], logits),
        ([Softmax(), Softmax()], logits.astype(np.float64)),
        ([], logits),
    ):
        ref = y
        for op in ops:
            ref = op(ref)
        kept = y.copy()
        got = fuse_post(ops)(y)
        assert got.dtype == ref.dtype and np.array_equal(got, ref)
        assert np.array_equal(y, kept)  # the engine's output array is not written over


@pytest.mark.parametrize("seed", range(10))
def test_odd_inputs_are_read_never_written(seed: int) -> None:
    # Non-contiguous, read-only and byte-swapped inputs: the same results, and the caller's array untouched.
    rng = np.random.default_rng(2000 + seed)
    for _ in range(10):
        kinds = tuple(rng.choice(PRE_KINDS, size=int(rng.integers(1, 6))))
        base = _input((6, 5, 3), "float32", rng)
        for x in (base.transpose(1, 0, 2), base[:, ::2], base.astype(">f4")):
            x.flags.writeable = False
            kept = x.copy()
            ops = _chain(kinds, x.shape, "float32", _spec(rng), rng)
            _check(ops, x)
            assert np.array_equal(x, kept)
