"""Data for compression runs: the built-in scikit-learn digits, or the user's data (sources.py).

A ``Dataset`` (dataset.py) holds raw train / validation / test splits (samples as the user's data has them)
and the per-sample pre-processing ops the manifests carry (docs/manifest.md). The user's data
is pre-processed by edgerun's own op implementations (``edgerun.pipeline.compile_pre``), the
code ``edgerun run`` executes, so a recipe measures exactly what a deployed artifact computes.
The digits keep their batched numpy path (the same maths, vectorized for the per-epoch shift
augmentation). No torch import.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compress.dataset import Dataset
from edgerun.compress.recipe import DataConfig

RAW_HW = 8  # sklearn digits are 8x8, values 0..16
PIXEL_SCALE = 1.0 / 16.0
LABELS = tuple(str(i) for i in range(10))


def load_dataset(cfg: DataConfig, base_dir: Path | str = ".") -> Dataset:
    if cfg.source == "sklearn-digits":
        return _digits(cfg)
    from edgerun.compress.preprocess import user_dataset

    return user_dataset(cfg, Path(base_dir))


def _digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images.astype(np.float32), d.target.astype(np.int64)
    tx, vx, ty, vy = train_test_split(x, y, test_size=cfg.test_fraction, stratify=y, random_state=cfg.split_seed)
    val_x, val_y = tx[:0], ty[:0]
    if cfg.validation_fraction > 0:
        tx, val_x, ty, val_y = train_test_split(
            tx, ty, test_size=cfg.validation_fraction, stratify=ty, random_state=cfg.split_seed
        )
    if cfg.train_limit:
        tx, ty = tx[: cfg.train_limit], ty[: cfg.train_limit]
    size = cfg.input_size_px
    scaled = to_scaled(tx, size).astype(np.float64)
    mean, std = round(float(scaled.mean()), 4), round(float(scaled.std()), 4)
    desc = f"sklearn digits test split ({cfg.test_fraction:.0%}, stratified, seed {cfg.split_seed}), {len(vy)} images"
    return Dataset(
        tx, ty, val_x, val_y, vx, vy, LABELS, digits_ops(size, mean, std),
        lambda raw: preprocess(raw, size, mean, std), desc, "image", shift_augment,
    )  # fmt: skip


@functools.lru_cache(maxsize=16)
def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix, half-pixel centres; built once per size pair (read-only).

    Same index maths as torch's upsample_bilinear2d with align_corners=False and as
    edgerun's runtime resize, so training and deployment see the same pixels.
    """
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    m = m.astype(np.float32)
    m.flags.writeable = False  # shared by every call through the cache
    return m


def to_scaled(raw: np.ndarray, size_px: int) -> np.ndarray:
    """cast -> resize -> scale, batched: (N, 8, 8) -> (N, size, size).

    The resize is two batched matmuls with precomputed interpolation matrices, ``Rh @ x @ Rw.T``:
    it runs on every epoch's augmented train split (the einsum it replaces took ~40x longer).
    """
    x = raw.astype(np.float32)
    if size_px != x.shape[-1]:
        rh, rw = _bilinear_matrix(x.shape[-2], size_px), _bilinear_matrix(x.shape[-1], size_px)
        x = np.matmul(np.matmul(rh, x), rw.T)
    return x * np.float32(PIXEL_SCALE)


def preprocess(raw: np.ndarray, size_px: int, mean: float, std: float) -> np.ndarray:
    x = (to_scaled(raw, size_px) - np.float32(mean)) / np.float32(std)
    return x[:, None, :, :].astype(np.float32)


def shift_augment(raw: np.ndarray, rng: np.random.Generator, shift_px: int) -> np.ndarray:
    """Random shift of each raw image by up to shift_px pixels (zero fill), before the resize."""
    if shift_px <= 0:
        return raw
    k = shift_px
    pad = np.pad(raw, ((0, 0), (k, k), (k, k)))
    off = rng.integers(0, 2 * k + 1, size=(len(raw), 2))
    h, w = raw.shape[-2:]
    return np.stack([pad[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(off)])


def digits_ops(size_px: int, mean: float, std: float) -> tuple[dict[str, Any], ...]:
    """The manifest ops of the digits' ``preprocess`` (per sample; the batch axis comes on top)."""
    pre: list[dict[str, Any]] = [{"op": "cast", "dtype": "float32"}]
    if size_px != RAW_HW:
        pre.append({"op": "resize", "size": [size_px, size_px], "method": "bilinear", "layout": "HW"})
    pre += [
        {"op": "scale", "factor": PIXEL_SCALE},
        {"op": "normalize", "mean": [mean], "std": [std]},
        {"op": "expand_dims", "axis": 0},
    ]
    return tuple(pre)


def manifest_pipeline(data: Dataset) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest's preprocess / postprocess op lists (docs/manifest.md) for float IO: the
    dataset's per-sample ops, then the batch axis."""
    pre = [dict(op) for op in data.pre_ops] + [{"op": "expand_dims", "axis": 0}]
    return pre, [{"op": "softmax"}, {"op": "topk", "k": min(3, data.n_classes)}]
