"""The user's data as a Dataset: split, labels as indices, pre-processing ops resolved on the train split.

A recipe declares per-sample ops in the manifest's vocabulary; ``normalize`` with ``per``
gets its mean / std here, from the train split after the ops before it (never from the
validation or test split). The resolved ops are applied with ``edgerun.pipeline.compile_pre``,
sample by sample, exactly as ``edgerun run`` applies the manifest. No torch import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.artifact import TensorSpec
from edgerun.compress.data_config import DataConfig, PreOp
from edgerun.compress.dataset import Dataset
from edgerun.compress.sources import RawSplits, Split, index_labels, load_raw
from edgerun.errors import CompressError

Op = dict[str, Any]
_FLOAT_INPUT = TensorSpec("input", (), "float32")  # compile_pre needs the model input only for ``quantize``


def user_dataset(cfg: DataConfig, base_dir: Path) -> Dataset:
    raw = load_raw(cfg, base_dir)
    train, val, test, how = _splits(raw, cfg)
    if cfg.train_limit:
        train = Split(train.x[: cfg.train_limit], train.y[: cfg.train_limit])
    ys, labels = index_labels([train.y, val.y, test.y], raw.labels, cfg.labels)
    ops = resolve_ops(cfg.preprocess, train.x)
    desc = f"{raw.what} test split ({how}), {len(test.y)} samples"
    name = "image" if cfg.source == "images" else "input"
    return Dataset(train.x, ys[0], val.x, ys[1], test.x, ys[2], labels, tuple(ops), _batch(ops), desc, name)


def _splits(raw: RawSplits, cfg: DataConfig) -> tuple[Split, Split, Split, str]:
    """Train / validation / test: the data's own, or split here (stratified when every class allows it)."""
    train, test = raw.train, raw.test
    how = "as given"
    if test is None:
        train, test = _split_off(train, cfg.test_fraction, cfg.split_seed)
        how = f"{cfg.test_fraction:.0%}, seed {cfg.split_seed}"
    val = raw.validation
    if val is None and cfg.validation_fraction > 0:
        train, val = _split_off(train, cfg.validation_fraction, cfg.split_seed)
    if val is None:
        val = Split(train.x[:0], train.y[:0])
    return train, val, test, how


def _split_off(s: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(s.y, return_counts=True)
    stratify = s.y if counts.min() >= 2 else None  # a class with one sample cannot be stratified
    a_x, b_x, a_y, b_y = train_test_split(s.x, s.y, test_size=fraction, stratify=stratify, random_state=seed)
    return Split(a_x, a_y), Split(b_x, b_y)


def resolve_ops(declared: Sequence[PreOp], train_x: np.ndarray) -> list[Op]:
    """Manifest op dicts for ``declared``; statistics from ``train_x``. Models see float32: a raw
    dtype other than float32 gets a ``cast`` first unless the recipe starts with one."""
    ops: list[Op] = []
    if train_x.dtype != np.float32 and not (declared and declared[0].op == "cast"):
        ops.append({"op": "cast", "dtype": "float32"})
    current = apply_ops(ops, train_x)
    for i, pre in enumerate(declared):
        op = _manifest_op(pre, current, f"[data] preprocess[{i}] ({pre.op})")
        ops.append(op)
        current = apply_ops([op], current)
    if current.dtype != np.float32:
        raise CompressError(f"[data] preprocess ends in {current.dtype}; models take float32 (add a 'cast')")
    return ops


def _manifest_op(pre: PreOp, current: np.ndarray, where: str) -> Op:
    if pre.op == "cast":
        return {"op": "cast", "dtype": pre.dtype}
    if pre.op == "resize":
        return {"op": "resize", "size": list(pre.size), "method": pre.method, "layout": pre.layout or "HWC"}
    if pre.op == "scale":
        return {"op": "scale", "factor": pre.factor}
    if pre.op == "layout":
        return {"op": "layout", "from": pre.from_, "to": pre.to}
    if pre.op == "expand_dims":
        return {"op": "expand_dims", "axis": pre.axis}
    if not pre.per:
        return {
            "op": "normalize",
            "mean": list(pre.mean),
            "std": list(pre.std),
            "axis": -1 if pre.axis is None else pre.axis,
        }
    mean, std, axis = _stats(pre, current.astype(np.float64), where)
    # float32 values: what Normalize computes with; a constant feature keeps std 1 (the op refuses 0).
    std = np.where(std > 0, std, 1.0)
    return {
        "op": "normalize",
        "mean": [float(np.float32(v)) for v in mean],
        "std": [float(np.float32(v)) for v in std],
        "axis": axis,
    }


def _stats(pre: PreOp, x: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, std, sample axis) over the train split: per feature of a 1-D sample, per channel, or all."""
    if pre.per == "all":
        return np.array([x.mean()]), np.array([x.std()]), -1
    if pre.per == "feature":
        if x.ndim != 2:
            raise CompressError(
                f"{where}: per 'feature' needs 1-D samples here, got samples of shape {list(x.shape[1:])}; "
                f"use per 'channel' with the channel axis"
            )
        return x.mean(axis=0), x.std(axis=0), -1
    axis = int(pre.axis)  # type: ignore[arg-type]  # checked when parsed: per "channel" needs an axis
    if not -(x.ndim - 1) <= axis < x.ndim - 1:
        raise CompressError(f"{where}: axis {axis} is outside samples of shape {list(x.shape[1:])}")
    batch_axis = axis + 1 if axis >= 0 else axis
    others = tuple(a for a in range(x.ndim) if a != batch_axis % x.ndim)
    return x.mean(axis=others), x.std(axis=others), axis


def apply_ops(ops: Sequence[Op], raw: np.ndarray) -> np.ndarray:
    """Apply manifest ops to each sample of ``raw`` (N, ...) with edgerun's runtime implementation."""
    if not ops:
        return raw
    return _batch(ops)(raw)


def _batch(ops: Sequence[Op]) -> Callable[[np.ndarray], np.ndarray]:
    from edgerun.pipeline import compile_pre

    fns = compile_pre(list(ops), _FLOAT_INPUT, "[data] preprocess")

    def run(raw: np.ndarray) -> np.ndarray:
        out = []
        for sample in raw:
            for f in fns:
                sample = f(sample)
            out.append(sample)
        return np.stack(out) if out else np.zeros((0,), np.float32)

    return run
